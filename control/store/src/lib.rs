//! Server state, transitions, sessions, usage and the wake lock of the
//! lifecycle engine (issue 3), behind one trait with two backends: an
//! embedded redb file for a single appliance (the default, zero set-up) and
//! Redis for a fleet of appliances sharing state. Switching is one config line.
//! Sessions are indexed by time and feed a history cursor; a retention removes old ones
//! and keeps their player time as hourly aggregates (see `history`).
//!
//! Modules: `store` (the `StateStore` trait and its sub-traits `Servers`, `Sessions`,
//! `History`, `WakeLock`, `Documents`, `Nodes`), `model` (records, transitions, leases),
//! `node` (the fleet's node records and the rules for writing them), `error`,
//! `history` (the feed's events and hourly aggregates), `usage` (usage computed from
//! transitions and sessions), and one folder per backend: `embedded` (redb) and `redis`
//! (in its files, `redis::` paths still name the redis client crate).

mod embedded;
mod error;
mod history;
mod model;
pub mod node;
mod redis;
mod store;
mod usage;

use std::path::PathBuf;
use std::sync::Arc;

pub use self::redis::{RedisConfig, RedisStore, SentinelConfig};
pub use embedded::{EmbeddedStore, FILE_NAME as EMBEDDED_FILE_NAME};
pub use error::StoreError;
pub use history::{player_ms_by_hour, FleetEvent, HistoryEvent, HistoryPage, Pruned, AGGREGATE_MS};
pub use model::{
    now_unix_ms, ArchiveRef, ArchiveUpdate, Change, Recovery, ServerRecord, ServerState,
    SessionRecord, Transition, TransitionFilter, WakeLease,
};
pub use node::{fleet_id, NodeRecord, NodeReport, NodeRole, NodeState};
pub use store::{
    Documents, History, Nodes, Servers, Sessions, StateStore, StoreBackup, WakeLock, LOG_CAPACITY,
};
pub use usage::{compute_usage, Usage};

/// Which store to run, as chosen by `[store] kind` in the config.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// `kind = "embedded"`: a redb file inside this data directory.
    Embedded { path: PathBuf },
    /// `kind = "redis"`: shared with other appliances.
    Redis(RedisConfig),
}

/// Opens the configured store. The Redis store does not connect here, so an
/// appliance starts while Redis is down; call `health()` to find out.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn StateStore>, StoreError> {
    Ok(match config {
        StoreConfig::Embedded { path } => Arc::new(EmbeddedStore::open(path).await?),
        StoreConfig::Redis(cfg) => Arc::new(RedisStore::open(cfg.clone())?),
    })
}
