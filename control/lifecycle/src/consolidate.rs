//! Consolidation: packing servers onto fewer nodes when that frees a whole node (so the
//! capacity controller can give it back). Nightly by default (`[node] consolidate`, UTC),
//! or on demand (`warden consolidate [--dry-run]`).
//!
//! The pass only plans; moving is a drain. It picks the node that is cheapest to empty
//! (fewest servers, then least memory in use) among those whose every server can move
//! without a disconnect (asleep, archived, or running with nobody on it) and fits on the
//! other ready nodes, and marks that one node `draining`: the node then moves its servers
//! with the migration, `moves_at_once` at a time. One node per pass, and none while another
//! node is draining, is the disruption budget. Nothing is planned from what this
//! appliance cannot see: a node owning servers it does not know is never chosen.

use std::collections::BTreeMap;

use serde::Serialize;
use tracing::info;
use warden_store::{NodeRecord, NodeState, ServerState};

use super::placement::{self, Need, NodeLoad};
use super::{now_ms, Engine, LifecycleError};

/// The document kind that records each night's pass, so the fleet runs it once.
const PASS: &str = "consolidation";

/// One server as the plan sees it.
#[derive(Debug, Clone)]
pub struct Piece {
    pub id: String,
    pub node: String,
    pub memory_gb: f64,
    /// Holds memory where it is (starting, running, stopping).
    pub running: bool,
    /// Why it may not move now, if it may not.
    pub stays: Option<String>,
    /// The nodes it may go to; None: any.
    pub targets: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
}

/// One planned move.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Move {
    pub server: String,
    pub from: String,
    pub to: String,
}

/// What a pass decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The node it empties; None: nothing to do (`why`).
    pub node: Option<String>,
    pub moves: Vec<Move>,
    pub why: String,
    /// The node was marked draining (not a dry run, and it was still ready).
    pub started: bool,
}

/// Plans one pass over the ready nodes with the `node` role (`nodes`, as the store has
/// them: `servers` is what each owns) and the servers this appliance knows (`pieces`).
pub fn plan(nodes: &[NodeRecord], pieces: &[Piece]) -> Plan {
    let none = |why: String| Plan {
        node: None,
        moves: Vec::new(),
        why,
        started: false,
    };
    let owned = |n: &NodeRecord| pieces.iter().filter(|p| p.node == n.id).count();
    let occupied: Vec<&NodeRecord> = nodes.iter().filter(|n| n.servers > 0).collect();
    if occupied.len() < 2 {
        return none(format!(
            "nothing to pack: {} node(s) hold servers",
            occupied.len()
        ));
    }
    let mut order = occupied.clone();
    order.sort_by(|a, b| {
        a.servers
            .cmp(&b.servers)
            .then(a.allocated_gb.total_cmp(&b.allocated_gb))
            .then(a.id.cmp(&b.id))
    });
    let mut reasons = Vec::new();
    for n in order {
        if (n.servers as usize) > owned(n) {
            reasons.push(format!(
                "{}: owns servers this appliance does not know",
                n.id
            ));
            continue;
        }
        let mine: Vec<&Piece> = pieces.iter().filter(|p| p.node == n.id).collect();
        if let Some(p) = mine.iter().find(|p| p.stays.is_some()) {
            let why = p.stays.as_deref().unwrap_or_default();
            reasons.push(format!("{}: {} {why}", n.id, p.id));
            continue;
        }
        match fit_elsewhere(nodes, n, &mine) {
            Ok(moves) => {
                return Plan {
                    node: Some(n.id.clone()),
                    why: format!(
                        "{} can be emptied: {} server(s) fit on the other nodes",
                        n.id,
                        moves.len()
                    ),
                    moves,
                    started: false,
                }
            }
            Err(why) => reasons.push(format!("{}: {why}", n.id)),
        }
    }
    none(format!("no node can be freed ({})", reasons.join("; ")))
}

/// Best-fit of `n`'s servers on the other nodes that hold servers, running ones first and
/// biggest first, each placement counted before the next.
fn fit_elsewhere(
    nodes: &[NodeRecord],
    n: &NodeRecord,
    mine: &[&Piece],
) -> Result<Vec<Move>, String> {
    // Only onto nodes that hold servers already: moving onto an empty node frees nothing.
    let others: Vec<&NodeRecord> = nodes
        .iter()
        .filter(|o| o.id != n.id && o.servers > 0)
        .collect();
    let mut allocated: Vec<f64> = others.iter().map(|o| o.allocated_gb).collect();
    let mut servers: Vec<u32> = others.iter().map(|o| o.servers).collect();
    let mut todo: Vec<&&Piece> = mine.iter().collect();
    todo.sort_by(|a, b| {
        b.running
            .cmp(&a.running)
            .then(b.memory_gb.total_cmp(&a.memory_gb))
            .then(a.id.cmp(&b.id))
    });
    let mut moves = Vec::new();
    for p in todo {
        let allowed: Vec<usize> = (0..others.len())
            .filter(|&i| p.targets.as_ref().is_none_or(|t| t.contains(&others[i].id)))
            .collect();
        let loads: Vec<NodeLoad<'_>> = allowed
            .iter()
            .map(|&i| NodeLoad {
                id: &others[i].id,
                capacity_gb: others[i].memory_gb,
                allocated_gb: allocated[i],
                servers: servers[i],
                labels: &others[i].labels,
            })
            .collect();
        let need = Need {
            memory_gb: p.memory_gb,
            labels: &p.labels,
        };
        let k = placement::place(&loads, need)
            .map_err(|r| format!("{}: {}", p.id, r.message(p.memory_gb)))?;
        let i = allowed[k];
        if p.running {
            if !placement::fits(others[i].memory_gb, allocated[i], p.memory_gb) {
                return Err(format!(
                    "{} runs and no other node has room for it now",
                    p.id
                ));
            }
            allocated[i] += p.memory_gb;
        }
        servers[i] += 1;
        moves.push(Move {
            server: p.id.clone(),
            from: n.id.clone(),
            to: others[i].id.clone(),
        });
    }
    Ok(moves)
}

/// Whether tonight's pass is due at `now_ms` (UTC) for a pass at `at` (seconds after
/// midnight): the day's id if so.
pub fn due(now_ms: u64, at: u32) -> Option<String> {
    let secs = now_ms / 1000;
    let (day, of_day) = (secs / 86_400, (secs % 86_400) as u32);
    (of_day >= at).then(|| format!("day-{day}"))
}

impl Engine {
    /// Plans a consolidation pass and, unless `dry_run`, starts it (marks the chosen node
    /// draining). Refused while another node is draining.
    pub async fn consolidate(&self, dry_run: bool) -> Result<Plan, LifecycleError> {
        let now = now_ms();
        let nodes = self.store.nodes().await?;
        if let Some(d) = nodes
            .iter()
            .find(|n| n.state == NodeState::Draining && n.servers > 0)
        {
            return Ok(Plan {
                node: None,
                moves: Vec::new(),
                why: format!("{} is still draining: one node at a time", d.id),
                started: false,
            });
        }
        let ready: Vec<NodeRecord> = nodes.into_iter().filter(|n| n.takes_servers(now)).collect();
        let mut pieces = Vec::new();
        let slots: Vec<_> = self.slots.read().values().cloned().collect();
        for slot in slots {
            let Some(rec) = self.store.get(&slot.spec.id).await? else {
                continue;
            };
            let Some(node) = rec.node.clone() else {
                continue;
            };
            let players = self.store.live_count(&slot.spec.id).await?;
            let stays = match rec.state {
                _ if slot.spec.archive.is_none() || slot.spec.data.is_none() => {
                    Some("cannot move (no archive storage, or not Warden's data)".to_string())
                }
                ServerState::Sleeping | ServerState::Archived => None,
                ServerState::Active if players == 0 => None,
                ServerState::Active => Some(format!("has {players} player(s) on it")),
                s => Some(format!("is {s}")),
            };
            pieces.push(Piece {
                id: slot.spec.id.clone(),
                node,
                memory_gb: slot.spec.memory_gb,
                running: super::node::holds_memory(rec.state),
                stays,
                targets: (!slot.spec.anywhere)
                    .then(|| slot.spec.node_backends.keys().cloned().collect()),
                labels: slot.spec.node_labels.clone(),
            });
        }
        let mut p = plan(&ready, &pieces);
        if let (Some(node), false) = (&p.node, dry_run) {
            let current = ready.iter().find(|n| &n.id == node).map(|n| n.state);
            if let Some(from) = current {
                self.store
                    .set_node_state(node, from, NodeState::Draining)
                    .await?;
                p.started = true;
                info!(%node, moves = p.moves.len(), "consolidation: draining a node to free it");
            }
        }
        Ok(p)
    }

    /// Runs tonight's pass, then the collector, once across the fleet (the first appliance
    /// to claim the day's record runs them). Called each tick; cheap when not due.
    pub(super) async fn nightly_consolidation(&self) {
        let Some(at) = self.settings.node.consolidate_at else {
            return;
        };
        let Some(day) = due(now_ms(), at) else {
            return;
        };
        if self.node.consolidated.lock().as_deref() == Some(day.as_str()) {
            return;
        }
        *self.node.consolidated.lock() = Some(day.clone());
        let claim = serde_json::json!({ "by": self.appliance(), "at_unix_ms": now_ms() });
        if self
            .store
            .put_doc(PASS, &day, &claim.to_string(), true)
            .await
            .is_err()
        {
            return;
        }
        match self.consolidate(false).await {
            Ok(p) => info!(node = ?p.node, why = %p.why, "nightly consolidation"),
            Err(e) => tracing::warn!(error = %e, "nightly consolidation failed"),
        }
        self.nightly_gc().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, gb: f64, allocated: f64, servers: u32) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            address: "10.0.0.1".into(),
            roles: vec![warden_store::NodeRole::Node],
            memory_gb: gb,
            labels: BTreeMap::new(),
            version: "t".into(),
            state: NodeState::Ready,
            since_unix_ms: 0,
            registered_unix_ms: 0,
            lease_until_unix_ms: u64::MAX,
            instance: "i".into(),
            host: "h".into(),
            pid: 1,
            allocated_gb: allocated,
            servers,
            waiting_gb: 0.0,
            link_port: None,
        }
    }

    fn piece(id: &str, node: &str, gb: f64, running: bool) -> Piece {
        Piece {
            id: id.into(),
            node: node.into(),
            memory_gb: gb,
            running,
            stays: None,
            targets: None,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn the_cheapest_node_to_empty_is_freed_onto_the_others() {
        let nodes = [
            node("a", 8.0, 2.0, 1),
            node("b", 8.0, 4.0, 2),
            node("c", 8.0, 0.0, 0),
        ];
        let pieces = [
            piece("s1", "a", 2.0, true),
            piece("s2", "b", 4.0, true),
            piece("s3", "b", 4.0, false),
        ];
        let p = plan(&nodes, &pieces);
        assert_eq!(p.node.as_deref(), Some("a"), "{p:?}");
        assert_eq!(p.moves.len(), 1);
        // The running 2 GB server best-fits b (4 of 8 in use) rather than the empty c.
        assert_eq!(p.moves[0].to, "b");
    }

    #[test]
    fn nothing_moves_onto_an_empty_node() {
        // a's sleeping server would fit the empty c best by the servers tie-break; packing
        // must put it on b, the other node in use.
        let nodes = [
            node("a", 8.0, 0.0, 1),
            node("b", 8.0, 0.0, 2),
            node("c", 8.0, 0.0, 0),
        ];
        let pieces = [
            piece("s1", "a", 1.0, false),
            piece("s2", "b", 1.0, false),
            piece("s3", "b", 1.0, false),
        ];
        let p = plan(&nodes, &pieces);
        assert_eq!(p.node.as_deref(), Some("a"), "{p:?}");
        assert_eq!(p.moves[0].to, "b", "{p:?}");
        let mut only = pieces.clone();
        only[0].targets = Some(vec!["c".into()]);
        // s1 may only go to the empty c, so a stays; b is freed onto a instead.
        let p = plan(&nodes, &only);
        assert_eq!(p.node.as_deref(), Some("b"), "{p:?}");
        assert!(p.moves.iter().all(|m| m.to == "a"), "{p:?}");
    }

    #[test]
    fn players_running_out_of_room_and_unknown_servers_keep_a_node() {
        let nodes = [node("a", 8.0, 6.0, 1), node("b", 8.0, 6.0, 1)];
        let mut pieces = [piece("s1", "a", 6.0, true), piece("s2", "b", 6.0, true)];
        let p = plan(&nodes, &pieces);
        assert_eq!(p.node, None, "neither fits beside the other: {p:?}");
        assert!(p.why.contains("no other node has room"), "{}", p.why);
        pieces[0].running = false;
        pieces[1].stays = Some("has 2 player(s) on it".into());
        let nodes = [node("a", 8.0, 0.0, 1), node("b", 8.0, 6.0, 1)];
        assert_eq!(plan(&nodes, &pieces).node.as_deref(), Some("a"));
        let p = plan(&nodes, &pieces[1..]);
        assert_eq!(p.node, None, "a owns a server not in the view: {p:?}");
        assert!(
            p.why.contains("does not know") && p.why.contains("player"),
            "{}",
            p.why
        );
        assert_eq!(
            plan(&nodes[..1], &pieces).node,
            None,
            "one node: nothing to pack"
        );
    }

    #[test]
    fn a_config_server_moves_only_to_its_node_backends() {
        let nodes = [
            node("a", 8.0, 0.0, 1),
            node("b", 8.0, 0.0, 3),
            node("c", 8.0, 0.0, 2),
        ];
        let mut s = piece("s1", "a", 1.0, false);
        s.targets = Some(vec!["c".into()]);
        let p = plan(&nodes, &[s.clone()]);
        // b and c own servers the view does not know: only a can be freed, onto c.
        assert_eq!(
            (p.node.as_deref(), p.moves[0].to.as_str()),
            (Some("a"), "c")
        );
        s.targets = Some(vec![]);
        assert_eq!(plan(&nodes, &[s]).node, None);
    }

    #[test]
    fn the_nightly_pass_is_due_once_past_its_time_each_day() {
        let day = 86_400_000;
        assert_eq!(due(3 * day + 3_600_000, 4 * 3600), None);
        assert_eq!(
            due(3 * day + 5 * 3_600_000, 4 * 3600).as_deref(),
            Some("day-3")
        );
        assert_eq!(due(4 * day + 1, 0).as_deref(), Some("day-4"));
    }
}
