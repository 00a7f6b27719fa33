//! The fleet's nodes: one record per appliance, written when it starts (registration) and
//! renewed while it lives (a lease), so every appliance knows which nodes can run servers,
//! where edges reach them, how much memory they offer and whether they are still alive.
//!
//! The decisions (who may register, renew or change a node's state) are made here, once,
//! on the record as read; each backend then writes the result with compare-and-set on the
//! record it read, so the two stores can never decide differently.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{check_id, StoreError};

/// Where a node is in its life. Only `ready` nodes take new servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Takes new servers and runs its own.
    Ready,
    /// Runs its own servers but takes no new ones (an operator's `cordon`).
    Cordoned,
    /// Its servers are being moved away.
    Draining,
    /// Its lease lapsed past the grace period: it may no longer act.
    Dead,
}

impl NodeState {
    pub const ALL: [NodeState; 4] = [
        NodeState::Ready,
        NodeState::Cordoned,
        NodeState::Draining,
        NodeState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "ready",
            NodeState::Cordoned => "cordoned",
            NodeState::Draining => "draining",
            NodeState::Dead => "dead",
        }
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an appliance does: accept players (`edge`), run servers (`node`), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Edge,
    Node,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Edge => "edge",
            NodeRole::Node => "node",
        }
    }
}

/// One appliance of the fleet, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The appliance's name (`lifecycle.appliance`).
    pub id: String,
    /// The address edges reach this node's servers at (an IP address or a host name).
    pub address: String,
    pub roles: Vec<NodeRole>,
    /// Memory for game servers, in GB.
    pub memory_gb: f64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The `warden` version it runs.
    pub version: String,
    pub state: NodeState,
    /// When `state` last changed.
    pub since_unix_ms: u64,
    /// When this process registered.
    pub registered_unix_ms: u64,
    /// Alive until then unless renewed.
    pub lease_until_unix_ms: u64,
    /// Random per process start: a restarted or duplicate process has another.
    pub instance: String,
    /// The machine and process holding the registration, for operators and for telling a
    /// crashed predecessor on the same machine from a live duplicate.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub pid: u32,
    /// Memory of the servers it runs (starting, active, swapping, stopping), in GB, as of
    /// its last renewal.
    #[serde(default)]
    pub allocated_gb: f64,
    /// Servers it owns (running or not), as of its last renewal.
    #[serde(default)]
    pub servers: u32,
    /// Memory of the wakes on this node waiting for room (players kept waiting for
    /// capacity), in GB, as of its last renewal: the capacity controller's sign of demand
    /// the fleet could not serve.
    #[serde(default)]
    pub waiting_gb: f64,
    /// The UDP port at `address` where it accepts QUIC links from edges; None: edges reach
    /// its servers over plain TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_port: Option<u16>,
}

impl NodeRecord {
    /// Whether its lease runs at `now_ms`.
    pub fn live(&self, now_ms: u64) -> bool {
        self.lease_until_unix_ms > now_ms
    }

    pub fn has_role(&self, role: NodeRole) -> bool {
        self.roles.contains(&role)
    }

    /// Whether it may be given new servers at `now_ms`: ready, alive and a node.
    pub fn takes_servers(&self, now_ms: u64) -> bool {
        self.state == NodeState::Ready && self.live(now_ms) && self.has_role(NodeRole::Node)
    }

    /// Checks what a registering node says about itself.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        check_id("node", &self.id)?;
        if self.roles.is_empty() {
            return Err(StoreError::Invalid(format!(
                "node {}: give it at least one role (edge, node)",
                self.id
            )));
        }
        if self.has_role(NodeRole::Node) && !(self.memory_gb.is_finite() && self.memory_gb > 0.0) {
            return Err(StoreError::Invalid(format!(
                "node {}: a capacity of {} GB cannot run servers; give memory_gb above 0",
                self.id, self.memory_gb
            )));
        }
        if self.address.trim().is_empty() {
            return Err(StoreError::Invalid(format!(
                "node {}: no address for edges to reach its servers",
                self.id
            )));
        }
        Ok(())
    }
}

/// What a node says with each lease renewal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeReport {
    pub lease_until_unix_ms: u64,
    pub allocated_gb: f64,
    pub servers: u32,
    pub waiting_gb: f64,
}

/// The record a registration writes over `current`, or why it may not. A live registration
/// by another process is refused unless it is `replace` (the caller found that process
/// gone, or is its upgrade). A cordoned or draining node stays so; a dead one comes back
/// ready (it owns nothing any more that it could harm).
pub(crate) fn registered(
    current: Option<&NodeRecord>,
    mut new: NodeRecord,
    replace: Option<&str>,
    now: u64,
) -> Result<NodeRecord, StoreError> {
    new.check()?;
    new.registered_unix_ms = now;
    new.since_unix_ms = now;
    new.state = NodeState::Ready;
    if let Some(cur) = current {
        if cur.instance != new.instance && cur.live(now) && Some(cur.instance.as_str()) != replace {
            return Err(StoreError::NodeTaken {
                id: new.id,
                holder: format!("{} pid {}", cur.host, cur.pid),
            });
        }
        if matches!(cur.state, NodeState::Cordoned | NodeState::Draining) {
            new.state = cur.state;
            new.since_unix_ms = cur.since_unix_ms;
        }
    }
    Ok(new)
}

/// The record a renewal by `instance` writes over `current`, or why this process may no
/// longer act as the node (another process took the id over, or it was declared dead).
pub(crate) fn renewed(
    current: Option<&NodeRecord>,
    id: &str,
    instance: &str,
    report: NodeReport,
) -> Result<NodeRecord, StoreError> {
    let cur = current.ok_or_else(|| StoreError::NotFound {
        kind: "node",
        id: id.to_string(),
    })?;
    if cur.instance != instance {
        return Err(StoreError::NodeFenced {
            id: id.to_string(),
            why: format!(
                "another process ({} pid {}) registered it since",
                cur.host, cur.pid
            ),
        });
    }
    if cur.state == NodeState::Dead {
        return Err(StoreError::NodeFenced {
            id: id.to_string(),
            why: "it was declared dead".to_string(),
        });
    }
    let mut next = cur.clone();
    next.lease_until_unix_ms = report.lease_until_unix_ms;
    next.allocated_gb = report.allocated_gb;
    next.servers = report.servers;
    next.waiting_gb = report.waiting_gb;
    Ok(next)
}

/// The record with its state moved `from` → `to`, or a conflict if it is not in `from`.
pub(crate) fn moved(
    current: Option<&NodeRecord>,
    id: &str,
    from: NodeState,
    to: NodeState,
    now: u64,
) -> Result<NodeRecord, StoreError> {
    let cur = current.ok_or_else(|| StoreError::NotFound {
        kind: "node",
        id: id.to_string(),
    })?;
    if cur.state != from {
        return Err(StoreError::NodeConflict {
            id: id.to_string(),
            expected: from,
            actual: cur.state,
        });
    }
    let mut next = cur.clone();
    next.state = to;
    next.since_unix_ms = now;
    Ok(next)
}

/// The fleet's identity: a random id made once per store by whichever appliance asks
/// first. What Warden creates outside the store (Docker containers and volumes) is labelled
/// with it, so the collector only ever considers what this fleet made, never what another
/// fleet (or a second appliance with its own store) shares the daemon with.
pub async fn fleet_id(docs: &dyn crate::Documents) -> Result<String, StoreError> {
    const KIND: &str = "fleet";
    const ID: &str = "id";
    let read = |json: String| -> Result<String, StoreError> {
        serde_json::from_str::<String>(&json)
            .ok()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| StoreError::Corrupt {
                key: "fleet/id".into(),
                detail: format!("not an id: {json:?}"),
            })
    };
    if let Some(json) = docs.get_doc(KIND, ID).await? {
        return read(json);
    }
    let made = uuid::Uuid::new_v4().simple().to_string();
    let json = format!("\"{made}\"");
    match docs.put_doc(KIND, ID, &json, true).await {
        Ok(()) => Ok(made),
        // Another appliance made it first: theirs stands.
        Err(StoreError::AlreadyExists { .. }) => match docs.get_doc(KIND, ID).await? {
            Some(json) => read(json),
            None => Err(StoreError::Corrupt {
                key: "fleet/id".into(),
                detail: "it vanished while it was read".into(),
            }),
        },
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(id: &str, instance: &str, lease_until: u64) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            address: "10.0.0.1".into(),
            roles: vec![NodeRole::Edge, NodeRole::Node],
            memory_gb: 16.0,
            labels: BTreeMap::new(),
            version: "test".into(),
            state: NodeState::Ready,
            since_unix_ms: 0,
            registered_unix_ms: 0,
            lease_until_unix_ms: lease_until,
            instance: instance.into(),
            host: "box".into(),
            pid: 1,
            allocated_gb: 0.0,
            servers: 0,
            waiting_gb: 0.0,
            link_port: None,
        }
    }

    #[test]
    fn a_live_registration_is_only_replaced_when_named() {
        let cur = record("n", "old", 2_000);
        let e = registered(Some(&cur), record("n", "new", 3_000), None, 1_000).unwrap_err();
        assert!(
            e.to_string()
                .contains("already registered by a live process"),
            "{e}"
        );
        assert!(registered(Some(&cur), record("n", "new", 3_000), Some("old"), 1_000).is_ok());
        // Lapsed: anyone may take it.
        assert!(registered(Some(&cur), record("n", "new", 5_000), None, 2_000).is_ok());
    }

    #[test]
    fn cordons_survive_a_restart_and_the_dead_come_back_ready() {
        let mut cur = record("n", "old", 0);
        cur.state = NodeState::Cordoned;
        let r = registered(Some(&cur), record("n", "new", 9), None, 5).unwrap();
        assert_eq!(r.state, NodeState::Cordoned);
        cur.state = NodeState::Dead;
        let r = registered(Some(&cur), record("n", "new", 9), None, 5).unwrap();
        assert_eq!(r.state, NodeState::Ready);
    }

    #[test]
    fn bad_capacity_and_roles_are_refused() {
        let mut r = record("n", "i", 9);
        r.memory_gb = 0.0;
        assert!(registered(None, r.clone(), None, 1).is_err());
        r.roles = vec![NodeRole::Edge];
        assert!(registered(None, r.clone(), None, 1).is_ok());
        r.roles.clear();
        assert!(registered(None, r, None, 1).is_err());
    }

    #[test]
    fn renewals_are_fenced_by_instance_and_death() {
        let report = NodeReport {
            lease_until_unix_ms: 99,
            allocated_gb: 2.0,
            servers: 3,
            waiting_gb: 0.0,
        };
        let cur = record("n", "me", 10);
        let r = renewed(Some(&cur), "n", "me", report).unwrap();
        assert_eq!((r.lease_until_unix_ms, r.servers), (99, 3));
        assert!(matches!(
            renewed(Some(&cur), "n", "other", report),
            Err(StoreError::NodeFenced { .. })
        ));
        let mut dead = cur.clone();
        dead.state = NodeState::Dead;
        assert!(renewed(Some(&dead), "n", "me", report).is_err());
        assert!(matches!(
            renewed(None, "n", "me", report),
            Err(StoreError::NotFound { .. })
        ));
    }
}
