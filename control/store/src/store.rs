//! The one interface the lifecycle engine, control API and proxy wiring use,
//! so that switching between one appliance (embedded) and a fleet sharing
//! Redis is a config line, not a code path.
//!
//! It is cut by concern into six sub-traits ([`Servers`], [`Sessions`], [`History`],
//! [`WakeLock`], [`Documents`], [`Nodes`]), so each backend keeps one file per concern;
//! [`StateStore`] requires all six and adds what concerns the store as a whole.
//! Callers hold an `Arc<dyn StateStore>`: on a trait object (and on a `S: StateStore`
//! bound) the sub-traits' methods resolve without importing them. Only a call on a
//! concrete store (`EmbeddedStore`, `RedisStore`) needs its sub-trait in scope.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::StoreError;
use crate::history::{FleetEvent, HistoryEvent, HistoryPage, Pruned};
use crate::model::{
    Change, ServerRecord, ServerState, SessionRecord, Transition, TransitionFilter, WakeLease,
};
use crate::node::{NodeRecord, NodeReport, NodeState};
use crate::usage::{compute_usage, Usage};

/// How many entries a log keeps (older ones are dropped as new ones arrive).
pub const LOG_CAPACITY: usize = 100_000;

/// What a store backup copied (`warden store backup FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreBackup {
    pub file: std::path::PathBuf,
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
}

/// The whole store: every concern below, plus what is about the store itself.
#[async_trait]
pub trait StateStore: Servers + Sessions + History + WakeLock + Documents + Nodes {
    /// "embedded" or "redis", for logs and status output.
    fn kind(&self) -> &'static str;

    /// Writes an online, consistent copy of the store to `dest`, verified by opening it.
    /// Only the embedded store can; Redis is backed up with Redis's own tools (BGSAVE, a
    /// replica: see docs/operations.md).
    async fn backup_to(&self, dest: &std::path::Path) -> Result<StoreBackup, StoreError> {
        let _ = dest;
        Err(StoreError::Invalid(format!(
            "the {} store is backed up with its own tools, not `warden store backup` (see docs/operations.md, \"Backing up the store\")",
            self.kind()
        )))
    }

    /// Ok if the store answers now.
    async fn health(&self) -> Result<(), StoreError>;

    /// A counter bumped by every write.
    async fn version(&self) -> Result<u64, StoreError>;

    /// The latest version seen; changes whenever any writer (on any
    /// appliance, for Redis) changes the store. Re-read what you need on
    /// change; intermediate versions may be skipped.
    fn watch(&self) -> watch::Receiver<u64>;

    /// Usage of one server in `[from_ms, to_ms)`, from its transitions, its sessions and
    /// the aggregates of pruned sessions (see [`compute_usage`]).
    async fn usage(
        &self,
        server: &str,
        from_ms: u64,
        to_ms: u64,
        memory_gb: f64,
    ) -> Result<Usage, StoreError> {
        let filter = TransitionFilter {
            server: Some(server.to_string()),
            since_ms: None,
            limit: usize::MAX,
        };
        let transitions = self.transitions(&filter).await?;
        let sessions = self.sessions_overlapping(server, from_ms, to_ms).await?;
        let aggregates = self.player_time_aggregates(server, from_ms, to_ms).await?;
        let archived_bytes = self
            .get(server)
            .await?
            .and_then(|r| r.archive)
            .map_or(0, |a| a.bytes);
        Ok(compute_usage(
            &transitions,
            &sessions,
            &aggregates,
            from_ms,
            to_ms,
            memory_gb,
            archived_bytes,
        ))
    }
}

/// Server records and their transitions (the audit trail and the ETA source).
#[async_trait]
pub trait Servers: Send + Sync {
    async fn get(&self, id: &str) -> Result<Option<ServerRecord>, StoreError>;

    /// All servers, sorted by id.
    async fn list(&self) -> Result<Vec<ServerRecord>, StoreError>;

    /// Creates a server and appends its creation transition (`from: None`).
    /// `AlreadyExists` if the id is taken.
    async fn put_new(&self, record: ServerRecord) -> Result<ServerRecord, StoreError>;

    /// Removes a server (its transitions stay, as audit trail). False if it
    /// did not exist.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;

    /// Compare-and-set on the epoch: applies `change` only if the record is
    /// still at `expected_epoch`, bumps the epoch, appends the transition and
    /// bumps the change version, all in one atomic step. `Conflict` otherwise.
    async fn apply(
        &self,
        id: &str,
        expected_epoch: u64,
        change: Change,
    ) -> Result<ServerRecord, StoreError>;

    /// [`Servers::apply`] for a plain state change.
    async fn transition(
        &self,
        id: &str,
        expected_epoch: u64,
        to: ServerState,
        reason: &str,
    ) -> Result<ServerRecord, StoreError> {
        self.apply(id, expected_epoch, Change::to(to, reason)).await
    }

    /// Transitions matching `filter`, oldest first; `limit` keeps the newest.
    async fn transitions(&self, filter: &TransitionFilter) -> Result<Vec<Transition>, StoreError>;

    /// The time spent in `from` on the last `n` changes `from → to` (of one
    /// server, or of all servers), oldest first. The ETA source: "starts
    /// usually take 38 s" is `recent_durations(Some(id), Starting, Active, 10)`.
    async fn recent_durations(
        &self,
        server: Option<&str>,
        from: ServerState,
        to: ServerState,
        n: usize,
    ) -> Result<Vec<Duration>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        // The matching changes are usually a fixed share of all changes, so
        // a window a few times `n` wide mostly suffices; widen if it does not.
        let mut limit = n.saturating_mul(8).max(64);
        loop {
            let filter = TransitionFilter {
                server: server.map(str::to_string),
                since_ms: None,
                limit,
            };
            let all = self.transitions(&filter).await?;
            let exhausted = all.len() < limit || limit >= 1 << 20;
            let mut found: Vec<Duration> = all
                .iter()
                .rev()
                .filter(|t| t.from == Some(from) && t.to == to)
                .filter_map(|t| t.duration_ms.map(Duration::from_millis))
                .take(n)
                .collect();
            if found.len() == n || exhausted {
                found.reverse();
                return Ok(found);
            }
            limit = limit.saturating_mul(8);
        }
    }
}

/// Player sessions and the live player counts idle detection reads.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Records an open session and counts it for its server and appliance.
    /// `AlreadyExists` if the id is taken.
    async fn session_started(&self, session: SessionRecord) -> Result<(), StoreError>;

    /// Closes a session and updates the server's `last_session_end_unix_ms`.
    /// Idempotent: ending an ended session returns it unchanged.
    async fn session_ended(&self, id: &str, end_unix_ms: u64) -> Result<SessionRecord, StoreError>;

    /// Sessions, optionally of one server and/or only the open ones, sorted
    /// by start time.
    async fn sessions(
        &self,
        server: Option<&str>,
        open_only: bool,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// Players on a server now, summed over appliances that are alive. Idle
    /// detection uses this, never a status poll.
    async fn live_count(&self, server: &str) -> Result<u64, StoreError>;

    /// Keeps this appliance's session counts alive. An appliance that stops
    /// calling this (crashed, partitioned) stops counting after the TTL.
    async fn heartbeat(&self, appliance: &str) -> Result<(), StoreError>;

    /// Ends every open session of `appliance`, e.g. when it starts again
    /// after a crash (its players were disconnected with it). Returns how many.
    async fn end_appliance_sessions(
        &self,
        appliance: &str,
        end_unix_ms: u64,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for s in self.sessions(None, true).await? {
            if s.appliance == appliance {
                self.session_ended(&s.id, end_unix_ms).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Sessions of `server` that overlap `[from_ms, to_ms)` (open ones included), from the
    /// time index: the cost follows the sessions that ended since `from_ms`, not the history.
    async fn sessions_overlapping(
        &self,
        server: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<SessionRecord>, StoreError>;
}

/// The history feed, the session time index and its retention.
#[async_trait]
pub trait History: Send + Sync {
    /// The feed's newest position: a reader that starts here sees only what comes next.
    async fn history_head(&self) -> Result<u64, StoreError>;

    /// Feed entries (transitions, joins, leaves) after position `cursor`, in the order the
    /// store committed them, at most `limit`. The feed keeps the newest [`LOG_CAPACITY`]
    /// entries, and none recorded longer ago than the retention ([`History::prune_history`]).
    async fn history_after(&self, cursor: u64, limit: usize) -> Result<HistoryPage, StoreError>;

    /// Appends a fleet-wide event (a capacity decision) to the feed, for live readers.
    async fn record_fleet_event(&self, event: FleetEvent) -> Result<(), StoreError>;

    /// Joins and leaves (of one server, or all) at or after `since_ms`: the newest `limit`,
    /// oldest first. Read from the session time index, so the cost follows `limit`.
    async fn session_events(
        &self,
        server: Option<&str>,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>, StoreError>;

    /// `(hour start, player ms)` of `server` folded from pruned sessions, for the hours
    /// that overlap `[from_ms, to_ms)`.
    async fn player_time_aggregates(
        &self,
        server: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError>;

    /// Retention: removes up to `batch` sessions that ended before `before_ms`, adding
    /// their player time to the hourly aggregates in the same atomic step (usage for the
    /// period stays right), and up to `batch` feed entries recorded before `before_ms`. Open
    /// sessions and transitions (the audit trail and billing input) stay. Call again while
    /// [`Pruned::more`] says so. Safe to run on several appliances at once.
    async fn prune_history(&self, before_ms: u64, batch: usize) -> Result<Pruned, StoreError>;
}

/// The right to start a server, held by one appliance at a time.
#[async_trait]
pub trait WakeLock: Send + Sync {
    /// Takes the right to start `server` for `ttl`, if nobody holds it.
    async fn acquire_wake(
        &self,
        server: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<WakeLease>, StoreError>;

    /// Extends a lease still held; false if it was lost (expired or taken).
    async fn renew_wake(&self, lease: &WakeLease, ttl: Duration) -> Result<bool, StoreError>;

    /// Gives a lease back; false if it was not (or no longer) held by it.
    async fn release_wake(&self, lease: &WakeLease) -> Result<bool, StoreError>;
}

/// JSON documents (API-defined servers, API tokens) and append-only logs (the audit log).
#[async_trait]
pub trait Documents: Send + Sync {
    /// Writes the JSON document `id` of `kind` (API-defined servers, API tokens). With
    /// `create`, `AlreadyExists` if it exists; otherwise it is replaced or created. Bumps
    /// the change version, so every appliance's watch sees the write.
    async fn put_doc(
        &self,
        kind: &'static str,
        id: &str,
        json: &str,
        create: bool,
    ) -> Result<(), StoreError>;

    async fn get_doc(&self, kind: &'static str, id: &str) -> Result<Option<String>, StoreError>;

    /// Every document of `kind`, sorted by id, as `(id, json)`.
    async fn list_docs(&self, kind: &'static str) -> Result<Vec<(String, String)>, StoreError>;

    /// False if it did not exist.
    async fn delete_doc(&self, kind: &'static str, id: &str) -> Result<bool, StoreError>;

    /// Appends one JSON line to the log `kind` (the audit log). The log keeps its newest
    /// [`LOG_CAPACITY`] entries.
    async fn append_log(&self, kind: &'static str, json: &str) -> Result<(), StoreError>;

    /// The newest `limit` entries of log `kind`, oldest first.
    async fn read_log(&self, kind: &'static str, limit: usize) -> Result<Vec<String>, StoreError>;
}

/// The fleet's nodes: registration, a lease renewed while the process lives, and the
/// node's state (see [`crate::node`]). Every decision is compare-and-set on the record.
#[async_trait]
pub trait Nodes: Send + Sync {
    /// Registers this process as node `record.id` (`record.instance` names the process).
    /// Refused (`NodeTaken`) while another process's lease is live, unless its instance is
    /// `replace` (the caller found that process gone, or is its upgrade); `Invalid` for a
    /// node without roles, address, or (with the node role) a capacity above 0. A
    /// cordoned or draining node stays so. Bumps the change version.
    async fn register_node(
        &self,
        record: NodeRecord,
        replace: Option<&str>,
    ) -> Result<NodeRecord, StoreError>;

    /// Renews the lease of node `id` held by `instance` and records its report. `NodeFenced`
    /// if another process registered the id since or the node was declared dead;
    /// `NotFound` if the store lost it (register again). Does not bump the change version:
    /// renewals are frequent and nobody waits on them.
    async fn renew_node(
        &self,
        id: &str,
        instance: &str,
        report: NodeReport,
    ) -> Result<NodeRecord, StoreError>;

    async fn node(&self, id: &str) -> Result<Option<NodeRecord>, StoreError>;

    /// Every node, sorted by id.
    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;

    /// Moves node `id` from state `from` to `to` (compare-and-set: `NodeConflict` if it is
    /// not in `from`). Bumps the change version.
    async fn set_node_state(
        &self,
        id: &str,
        from: NodeState,
        to: NodeState,
    ) -> Result<NodeRecord, StoreError>;
}
