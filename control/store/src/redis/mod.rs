//! The store for a fleet: several appliances share one Redis. Every write
//! that must be atomic is one Lua script (scripts run atomically, and unlike
//! WATCH/MULTI they are safe on the shared multiplexed connection). Every
//! call is bounded by `op_timeout`, so a Redis outage turns into a prompt
//! `Unavailable` — the proxy keeps routing from its last table and refuses
//! new wakes — and the `ConnectionManager` reconnects once Redis is back.
//! With Redis Sentinel the store follows the primary through a failover (`link`), and
//! every script's writes wait for a replica's acknowledgement (`WAIT 1`), so what was
//! acknowledged (a wake lock, a fencing epoch) survives the failover.
//!
//! Here: the config, the store and what is about it as a whole. Apart: `call` (every
//! round trip, bounded and retried), `link` (which server calls go to), `sentinel`
//! (asking the sentinels for the primary), `keys` (key names), `scripts` (the Lua scripts
//! in `lua/`), `watcher` (pub/sub plus polling behind `watch()`), and one file per
//! sub-trait of the store: `servers`, `sessions`, `history`, `wake`, `docs`, `nodes`.

mod call;
mod docs;
mod history;
mod keys;
mod link;
mod nodes;
mod scripts;
mod sentinel;
mod servers;
mod sessions;
mod wake;
mod watcher;

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{check_id, StoreError};
use crate::store::StateStore;
use keys::Keys;
use link::Link;
use scripts::Scripts;
pub use sentinel::SentinelConfig;

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`. With `sentinel`, only its credentials and
    /// database are used: the sentinels name the host.
    pub url: String,
    /// Find the primary through Redis Sentinel (and follow it through a failover)
    /// instead of at `url`'s address.
    pub sentinel: Option<SentinelConfig>,
    /// Key prefix, so several fleets (or tests) can share one Redis.
    pub prefix: String,
    /// Upper bound for any one call, retries included.
    pub op_timeout: Duration,
    /// How long an appliance's session counts outlive its last heartbeat.
    pub live_ttl: Duration,
    /// How often `watch()` re-reads the version counter, because pub/sub
    /// drops messages sent while the subscriber reconnects.
    pub poll_interval: Duration,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            sentinel: None,
            prefix: "warden".to_string(),
            op_timeout: Duration::from_secs(2),
            live_ttl: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
        }
    }

    /// The primary named `master_name` by `sentinels` (`host:port` each); `url` gives
    /// the credentials and database (e.g. `redis://:secret@primary/0`, the host ignored).
    pub fn sentinel(
        url: impl Into<String>,
        sentinels: Vec<String>,
        master_name: impl Into<String>,
    ) -> Self {
        RedisConfig {
            sentinel: Some(SentinelConfig {
                sentinels,
                master_name: master_name.into(),
            }),
            ..RedisConfig::new(url)
        }
    }
}

pub struct RedisStore {
    link: Link,
    cfg: RedisConfig,
    keys: Keys,
    scripts: Scripts,
    version_tx: Arc<watch::Sender<u64>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        let watcher = self.watcher.get_mut();
        if let Some(task) = watcher.take() {
            task.abort();
        }
    }
}

impl RedisStore {
    /// Prepares the store without connecting, so an appliance starts (and
    /// routes from its last table) while Redis is down; `health()` tells
    /// whether Redis answers. Fails only on an unusable URL.
    /// Must run inside a tokio runtime (the connection manager spawns tasks).
    pub fn open(cfg: RedisConfig) -> Result<Self, StoreError> {
        check_id("prefix", &cfg.prefix)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::Invalid(
                "the redis store must be opened inside a tokio runtime".to_string(),
            ));
        }
        let link = Link::new(&cfg)?;
        let (version_tx, _) = watch::channel(0);
        Ok(RedisStore {
            link,
            keys: Keys::new(&cfg.prefix),
            cfg,
            scripts: Scripts::load(),
            version_tx: Arc::new(version_tx),
            watcher: Mutex::new(None),
        })
    }
}

#[async_trait]
impl StateStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn health(&self) -> Result<(), StoreError> {
        let _: String = self.query(&redis::cmd("PING"), true).await?;
        Ok(())
    }

    async fn version(&self) -> Result<u64, StoreError> {
        self.read_version().await
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.start_watcher();
        self.version_tx.subscribe()
    }
}
