//! Self-healing: a node that stopped renewing its lease is declared dead, and its servers
//! come back on healthy nodes from their newest verified backup.
//!
//! Fencing comes first. A node is declared `dead` (compare-and-set on its record) only
//! once its lease has lapsed by `dead_after`; from then on its renewals are refused, and
//! each of its servers is re-placed with a compare-and-set on the server's epoch that also
//! changes its owner, so anything the old node still tries (a paused VM waking up) is
//! refused by the store: the epoch moved on and it is no longer the owner. Every live
//! appliance runs this each renewal round; the compare-and-sets make exactly one of them
//! win each step. The new owner then restores the world (see `archive::restore`) before
//! anything can start it, and players who join meanwhile wait in the anteroom.
//!
//! A node declared dead that comes back (paused, or cut off from the store) learns it at
//! its next renewal: it stops every server it still runs that another node owns now, and
//! registers again as an empty, ready node.

use std::collections::HashSet;
use std::sync::Arc;

use tracing::warn;
use warden_store::{Change, NodeState, Recovery, ServerRecord, ServerState, StoreError};

use super::events::Event;
use super::{now_ms, Engine, Slot};

impl Engine {
    /// Declares nodes whose lease lapsed more than `dead_after` ago dead, then re-places
    /// the servers this appliance knows that a dead node owns. Called each renewal round,
    /// after the fleet was re-read.
    pub(super) async fn heal(&self) {
        let Some(dead_after) = self.settings.node.dead_after else {
            return;
        };
        let now = now_ms();
        let me = self.appliance().to_string();
        let fleet = self.nodes();
        let mut dead: HashSet<String> = HashSet::new();
        for n in &fleet {
            if n.id == me {
                continue;
            }
            if n.state == NodeState::Dead {
                dead.insert(n.id.clone());
                continue;
            }
            let lapsed_for = now.saturating_sub(n.lease_until_unix_ms);
            if n.live(now) || lapsed_for < dead_after.as_millis() as u64 {
                continue;
            }
            match self
                .store
                .set_node_state(&n.id, n.state, NodeState::Dead)
                .await
            {
                Ok(rec) => {
                    warn!(node = %rec.id, lapsed_s = lapsed_for / 1000, servers = rec.servers, "node declared dead: its lease lapsed");
                    let _ = self.events.send(Event::node_down(
                        &rec.id,
                        &format!(
                            "no lease renewal for {} s; its servers are re-placed",
                            lapsed_for / 1000
                        ),
                        now,
                    ));
                    dead.insert(rec.id);
                }
                // Another appliance declared it first, or it renewed just now.
                Err(StoreError::NodeConflict {
                    actual: NodeState::Dead,
                    ..
                }) => {
                    dead.insert(n.id.clone());
                }
                Err(e) => warn!(node = %n.id, error = %e, "could not declare the node dead"),
            }
        }
        if dead.is_empty() {
            return;
        }
        let slots: Vec<Arc<Slot>> = self.slots.read().values().cloned().collect();
        for slot in slots {
            let owner = slot.record.lock().node.clone();
            if owner.as_ref().is_some_and(|o| dead.contains(o)) {
                self.replace(&slot, &fleet).await;
            }
        }
    }

    /// Re-places one server of a dead node (if its record, read now, still names a dead
    /// owner) on the node placement chooses, marked for recovery from its backups.
    async fn replace(&self, slot: &Slot, fleet: &[warden_store::NodeRecord]) {
        let id = &slot.spec.id;
        let Ok(Some(rec)) = self.store.get(id).await else {
            return;
        };
        let Some(from) = rec.node.clone() else {
            return;
        };
        let Some(dead) = fleet
            .iter()
            .find(|n| n.id == from && n.id != self.appliance())
        else {
            return;
        };
        // Re-read: the fleet copy may be a round old.
        let Ok(Some(node)) = self.store.node(&dead.id).await else {
            return;
        };
        if node.state != NodeState::Dead {
            return;
        }
        // A config-defined server is claimed by a node that defines it, if that node takes
        // servers now (not cordoned or draining).
        if !slot.spec.anywhere && !self.takes_servers_now() {
            return;
        }
        let to = match self.place(&slot.spec) {
            Ok(to) => to,
            Err(why) => {
                warn!(server = %id, dead = %from, %why, "cannot re-place a dead node's server yet");
                return;
            }
        };
        let change = recovery_change(&rec, &from, &to, node.lease_until_unix_ms);
        match self.store.apply(id, rec.epoch, change).await {
            Ok(rec) => {
                warn!(server = %id, dead = %from, node = %to, state = %rec.state, "server re-placed after its node died");
                let state = rec.state;
                *slot.record.lock() = rec;
                slot.state.send_replace(state);
            }
            // Another appliance re-placed it first.
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => warn!(server = %id, error = %e, "could not re-place the server"),
        }
    }

    /// This node was declared dead while it lived (paused, or cut off from the store): it
    /// stops what it runs for servers now owned elsewhere, then registers afresh.
    pub(super) async fn fenced(&self) {
        warn!("this node was declared dead by the fleet: stopping the servers it no longer owns");
        let slots: Vec<Arc<Slot>> = self.slots.read().values().cloned().collect();
        for slot in slots {
            let Ok(Some(rec)) = self.store.get(&slot.spec.id).await else {
                continue;
            };
            let elsewhere = rec.node.as_deref().is_some_and(|n| n != self.appliance());
            let state = rec.state;
            if elsewhere {
                *slot.record.lock() = rec;
                slot.state.send_replace(state);
                if slot.is_local() || slot.spec.runtime.running().await.unwrap_or(false) {
                    self.stop_unowned(&slot).await;
                }
            }
        }
        if let Err(e) = self.register().await {
            warn!(error = %e, "could not register again after being declared dead");
        }
    }

    /// Stops a server that runs here although another node owns it (its world there is the
    /// true one). Nothing is deleted: the stale copy stays on this node's disk.
    pub(super) async fn stop_unowned(&self, slot: &Slot) {
        let id = &slot.spec.id;
        warn!(server = %id, owner = ?slot.record.lock().node, "runs here but another node owns it: stopping it");
        if let Err(e) = slot.spec.runtime.stop(slot.spec.stop_timeout).await {
            warn!(server = %id, error = %e, "could not stop it");
            return;
        }
        slot.local
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.capacity_changed();
    }
}

/// The change that hands a dead node's server to `to`: an archived world stays where it
/// is (the archive is intact and newer than any backup); any other comes from the newest
/// verified backup.
fn recovery_change(rec: &ServerRecord, from: &str, to: &str, lost_unix_ms: u64) -> Change {
    let archived = rec.archive.is_some()
        && rec.recovery.is_none()
        && matches!(rec.state, ServerState::Archived | ServerState::Restoring);
    if archived {
        return Change::to(
            ServerState::Archived,
            format!("node {from} died; archive intact, now owned by {to}"),
        )
        .with_place(to);
    }
    let lost = rec
        .recovery
        .as_ref()
        .map_or(lost_unix_ms, |r| r.lost_unix_ms);
    let first = rec.recovery.as_ref().map_or(from, |r| r.from_node.as_str());
    Change::to(
        ServerState::Archived,
        format!("recovering: node {from} died; restored from its newest backup on {to}"),
    )
    .with_place(to)
    .recovering(Recovery {
        from_node: first.to_string(),
        lost_unix_ms: lost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_store::ArchiveRef;

    #[test]
    fn an_archived_world_stays_archived_and_anything_else_recovers_from_backups() {
        let mut rec = ServerRecord::new("w", ServerState::Active, "ready");
        rec.node = Some("b".into());
        let c = recovery_change(&rec, "b", "c", 42);
        assert_eq!(c.to, ServerState::Archived);
        assert_eq!(c.place.as_deref(), Some("c"));
        assert_eq!(
            c.recovery,
            Some(Recovery {
                from_node: "b".into(),
                lost_unix_ms: 42
            })
        );
        rec.state = ServerState::Archived;
        rec.archive = Some(ArchiveRef {
            location: "w".into(),
            manifest_sha256: "00".into(),
            bytes: 1,
        });
        let c = recovery_change(&rec, "b", "c", 42);
        assert_eq!((c.to, c.recovery), (ServerState::Archived, None));
        // Re-placed twice (the first new owner died too): the first loss is kept.
        rec.recovery = Some(Recovery {
            from_node: "a".into(),
            lost_unix_ms: 7,
        });
        let c = recovery_change(&rec, "b", "c", 42);
        assert_eq!(
            c.recovery.map(|r| (r.from_node, r.lost_unix_ms)),
            Some(("a".into(), 7))
        );
    }
}
