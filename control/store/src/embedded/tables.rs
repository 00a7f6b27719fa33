//! The redb tables and meta keys of the embedded store, in one place: the file's
//! layout, which every concern's file reads and writes.

use redb::TableDefinition;

pub(super) const SERVERS: TableDefinition<&str, &str> = TableDefinition::new("servers");
/// Global sequence number → transition; the sequence is the append order.
pub(super) const TRANSITIONS: TableDefinition<u64, &str> = TableDefinition::new("transitions");
/// (server, sequence) index so one server's history is read without a scan.
pub(super) const TRANSITIONS_BY_SERVER: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("transitions_by_server");
pub(super) const SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("sessions");
pub(super) const OPEN_SESSIONS: TableDefinition<&str, ()> = TableDefinition::new("open_sessions");
/// Sessions by (start, id) and by (end, id): the event list reads the newest, the
/// retention the oldest, neither scans the history.
pub(super) const SESSION_STARTS: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("session_starts");
pub(super) const SESSION_ENDS: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("session_ends");
/// The same, per server: (server, time, id).
pub(super) const SERVER_SESSION_STARTS: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("server_session_starts");
pub(super) const SERVER_SESSION_ENDS: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("server_session_ends");
/// (server, hour start) → player ms of pruned sessions.
pub(super) const PLAYER_MS: TableDefinition<(&str, u64), u64> = TableDefinition::new("player_ms");
/// Feed position → `time|event JSON` (see `history::feed_payload`).
pub(super) const FEED: TableDefinition<u64, &str> = TableDefinition::new("feed");
pub(super) const WAKE_EPOCHS: TableDefinition<&str, u64> = TableDefinition::new("wake_epochs");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (kind, id) → JSON document.
pub(super) const DOCS: TableDefinition<(&str, &str), &str> = TableDefinition::new("docs");
/// (kind, sequence) → JSON log entry.
pub(super) const LOGS: TableDefinition<(&str, u64), &str> = TableDefinition::new("logs");

/// Node id → node record JSON.
pub(super) const NODES: TableDefinition<&str, &str> = TableDefinition::new("nodes");

pub(super) const META_VERSION: &str = "version";
pub(super) const META_TRANSITION_SEQ: &str = "transition_seq";
pub(super) const META_FEED_SEQ: &str = "feed_seq";
/// Set once the sessions of a store written before the time index are indexed.
pub(super) const META_SESSION_INDEX: &str = "session_index";

/// The file inside the data directory.
pub const FILE_NAME: &str = "state.redb";
