//! The records the lifecycle engine keeps. Both stores persist them as JSON so
//! that an operator can read them with `redis-cli` and so the two stores can
//! never disagree about the encoding.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// Where a server is in its lifecycle (see DESIGN.md "Server lifecycle").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    Starting,
    Active,
    Stopping,
    Sleeping,
    Archiving,
    Archived,
    Restoring,
    Swapping,
    Failed,
}

impl ServerState {
    pub const ALL: [ServerState; 9] = [
        ServerState::Starting,
        ServerState::Active,
        ServerState::Stopping,
        ServerState::Sleeping,
        ServerState::Archiving,
        ServerState::Archived,
        ServerState::Restoring,
        ServerState::Swapping,
        ServerState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Starting => "starting",
            ServerState::Active => "active",
            ServerState::Stopping => "stopping",
            ServerState::Sleeping => "sleeping",
            ServerState::Archiving => "archiving",
            ServerState::Archived => "archived",
            ServerState::Restoring => "restoring",
            ServerState::Swapping => "swapping",
            ServerState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified copy of a server's data outside the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRef {
    pub location: String,
    pub manifest_sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    pub id: String,
    pub state: ServerState,
    pub since_unix_ms: u64,
    /// Why the server is in this state; for `Failed` the error.
    pub reason: String,
    /// Bumped on every state change; the token for compare-and-set.
    pub epoch: u64,
    #[serde(default)]
    pub last_session_end_unix_ms: Option<u64>,
    #[serde(default)]
    pub archive: Option<ArchiveRef>,
    /// The node that owns the server: only it starts, stops, archives or restores it, and
    /// every other appliance forwards players to it. Set when the record is created (by
    /// placement) and changed by a migration; None only in records written before nodes
    /// existed, until a node claims them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Set while the server is being recovered after its node died: its world is not on
    /// its (new) owner yet and comes from the newest verified backup. Only `Archived` and
    /// `Restoring` records carry it; any other state clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

/// Why a server is being recovered: the node that held its world died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// The dead node.
    pub from_node: String,
    /// When that node was last known alive (its lease's end): what a backup taken before
    /// this misses is the data at risk.
    pub lost_unix_ms: u64,
}

impl ServerRecord {
    /// A fresh record at epoch 0, e.g. for a server first seen in the config.
    pub fn new(id: impl Into<String>, state: ServerState, reason: impl Into<String>) -> Self {
        ServerRecord {
            id: id.into(),
            state,
            since_unix_ms: now_unix_ms(),
            reason: reason.into(),
            epoch: 0,
            last_session_end_unix_ms: None,
            archive: None,
            node: None,
            recovery: None,
        }
    }
}

/// One state change: the audit trail, the ETA source and the forecast's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub server: String,
    /// `None` when the server was created.
    pub from: Option<ServerState>,
    pub to: ServerState,
    pub reason: String,
    pub at_unix_ms: u64,
    /// Time spent in `from`.
    pub duration_ms: Option<u64>,
    /// The record's epoch after this change, so a transition can be matched
    /// to the record version it produced.
    pub epoch: u64,
}

/// What a transition does to the archive reference. Setting it travels in the
/// same atomic step as the state change, so `Archived` never exists without
/// the reference to its verified copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ArchiveUpdate {
    #[default]
    Keep,
    Set(ArchiveRef),
    Clear,
}

/// A state change requested from [`crate::StateStore::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub to: ServerState,
    pub reason: String,
    pub archive: ArchiveUpdate,
    /// Places the server on this appliance (in the same atomic step).
    pub place: Option<String>,
    /// Applies only if the record's owner is this node: fencing by ownership, checked in
    /// the same atomic step as the epoch.
    pub owner: Option<String>,
    /// Marks the server as being recovered (see [`ServerRecord::recovery`]).
    pub recovery: Option<Recovery>,
}

impl Change {
    pub fn to(to: ServerState, reason: impl Into<String>) -> Self {
        Change {
            to,
            reason: reason.into(),
            archive: ArchiveUpdate::Keep,
            place: None,
            owner: None,
            recovery: None,
        }
    }

    /// Marks the server as recovering from the death of its node (kept while it stays
    /// `Archived` or `Restoring`).
    pub fn recovering(mut self, recovery: Recovery) -> Self {
        self.recovery = Some(recovery);
        self
    }

    /// Refused (`NotOwner`) unless the record's owner is `node` when it is applied.
    pub fn fenced_by(mut self, node: impl Into<String>) -> Self {
        self.owner = Some(node.into());
        self
    }

    /// The ownership fence against the record as it is now.
    pub(crate) fn check_owner(&self, current: &ServerRecord) -> Result<(), StoreError> {
        match &self.owner {
            Some(me) if current.node.as_deref() != Some(me.as_str()) => Err(StoreError::NotOwner {
                id: current.id.clone(),
                owner: current.node.clone().unwrap_or_else(|| "nobody".into()),
                by: me.clone(),
            }),
            _ => Ok(()),
        }
    }

    pub fn with_place(mut self, node: impl Into<String>) -> Self {
        self.place = Some(node.into());
        self
    }

    pub fn with_archive(mut self, archive: ArchiveUpdate) -> Self {
        self.archive = archive;
        self
    }

    /// The record and transition this change produces from `current` at `now`.
    /// Shared by both stores so their results are identical.
    pub(crate) fn apply_to(&self, current: &ServerRecord, now: u64) -> (ServerRecord, Transition) {
        let mut next = current.clone();
        next.state = self.to;
        next.reason = self.reason.clone();
        // A change that keeps the state (a claim, a placement) does not restart its clock.
        if self.to != current.state {
            next.since_unix_ms = now;
        }
        next.epoch = current.epoch.saturating_add(1);
        match &self.archive {
            ArchiveUpdate::Keep => {}
            ArchiveUpdate::Set(a) => next.archive = Some(a.clone()),
            ArchiveUpdate::Clear => next.archive = None,
        }
        if let Some(node) = &self.place {
            next.node = Some(node.clone());
        }
        // The world is back on a node once the server leaves the archive states.
        match &self.recovery {
            Some(r) => next.recovery = Some(r.clone()),
            None if !matches!(self.to, ServerState::Archived | ServerState::Restoring) => {
                next.recovery = None
            }
            None => {}
        }
        let t = Transition {
            server: current.id.clone(),
            from: Some(current.state),
            to: self.to,
            reason: self.reason.clone(),
            at_unix_ms: now,
            duration_ms: Some(now.saturating_sub(current.since_unix_ms)),
            epoch: next.epoch,
        };
        (next, t)
    }
}

/// The transition that records a server's creation.
pub(crate) fn creation(record: &ServerRecord, now: u64) -> Transition {
    Transition {
        server: record.id.clone(),
        from: None,
        to: record.state,
        reason: record.reason.clone(),
        at_unix_ms: now,
        duration_ms: None,
        epoch: record.epoch,
    }
}

/// One player's stay on a server, through one appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub server: String,
    pub player: String,
    #[serde(default)]
    pub player_uuid: Option<String>,
    pub appliance: String,
    pub start_unix_ms: u64,
    #[serde(default)]
    pub end_unix_ms: Option<u64>,
}

impl SessionRecord {
    /// A new open session with a random id, starting now.
    pub fn start(
        server: impl Into<String>,
        player: impl Into<String>,
        appliance: impl Into<String>,
    ) -> Self {
        SessionRecord {
            id: uuid::Uuid::new_v4().to_string(),
            server: server.into(),
            player: player.into(),
            player_uuid: None,
            appliance: appliance.into(),
            start_unix_ms: now_unix_ms(),
            end_unix_ms: None,
        }
    }
}

/// Which transitions to read. `limit` keeps the newest ones; results are
/// always oldest first, newest last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionFilter {
    pub server: Option<String>,
    pub since_ms: Option<u64>,
    pub limit: usize,
}

impl Default for TransitionFilter {
    fn default() -> Self {
        TransitionFilter {
            server: None,
            since_ms: None,
            limit: 1000,
        }
    }
}

impl TransitionFilter {
    pub(crate) fn matches(&self, t: &Transition) -> bool {
        self.server.as_deref().is_none_or(|s| s == t.server)
            && self.since_ms.is_none_or(|s| t.at_unix_ms >= s)
    }
}

/// Proof of holding a server's wake lock. `fencing_epoch` strictly increases
/// with every lease of that server, so whoever acts on the lease (the node
/// agent) can reject a holder whose TTL ran out during a pause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeLease {
    pub server: String,
    pub token: String,
    pub fencing_epoch: u64,
}

/// Wall-clock milliseconds; a clock before 1970 reads as 0 rather than failing.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn new_token(owner: &str) -> String {
    format!("{owner}:{}", uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recovery_mark_lives_only_while_the_world_is_not_back() {
        let rec = ServerRecord::new("w", ServerState::Sleeping, "x");
        let mark = Recovery {
            from_node: "b".into(),
            lost_unix_ms: 5,
        };
        let c = Change::to(ServerState::Archived, "re-placed")
            .with_place("c")
            .recovering(mark.clone());
        let (rec, _) = c.apply_to(&rec, 10);
        assert_eq!(
            (rec.recovery.as_ref(), rec.node.as_deref()),
            (Some(&mark), Some("c"))
        );
        let (rec, _) = Change::to(ServerState::Restoring, "r").apply_to(&rec, 11);
        assert_eq!(rec.recovery.as_ref(), Some(&mark), "kept while restoring");
        let (back, _) = Change::to(ServerState::Archived, "failed").apply_to(&rec, 12);
        assert_eq!(
            back.recovery.as_ref(),
            Some(&mark),
            "kept after a failed restore"
        );
        let (done, _) = Change::to(ServerState::Sleeping, "recovered").apply_to(&rec, 13);
        assert_eq!(done.recovery, None);
    }
}
