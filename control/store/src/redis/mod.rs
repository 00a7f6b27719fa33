//! The store for a fleet: several appliances share one Redis. Every write
//! that must be atomic is one Lua script (scripts run atomically, and unlike
//! WATCH/MULTI they are safe on the shared multiplexed connection). Every
//! call is bounded by `op_timeout`, so a Redis outage turns into a prompt
//! `Unavailable` — the proxy keeps routing from its last table and refuses
//! new wakes — and the `ConnectionManager` reconnects once Redis is back.
//!
//! Here: the config, the store and what is about it as a whole. Apart: `call` (every
//! round trip, bounded and retried), `keys` (key names), `scripts` (the Lua scripts in
//! `lua/`), `watcher` (pub/sub plus polling behind `watch()`), and one file per
//! sub-trait of the store: `servers`, `sessions`, `history`, `wake`, `docs`, `nodes`.

mod call;
mod docs;
mod history;
mod keys;
mod nodes;
mod scripts;
mod servers;
mod sessions;
mod wake;
mod watcher;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{check_id, StoreError};
use crate::store::StateStore;
use keys::Keys;
use scripts::Scripts;

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
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
            prefix: "warden".to_string(),
            op_timeout: Duration::from_secs(2),
            live_ttl: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
        }
    }
}

pub struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
    /// host:port only: never the URL, which may carry a password.
    addr: String,
    cfg: RedisConfig,
    keys: Keys,
    scripts: Scripts,
    version_tx: Arc<watch::Sender<u64>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        let watcher = self.watcher.get_mut().unwrap_or_else(|p| p.into_inner());
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
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| StoreError::Invalid(format!("redis url: {e}")))?;
        let addr = client.get_connection_info().addr().to_string();
        let connect_timeout = cfg.op_timeout.min(Duration::from_secs(1));
        let manager_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(cfg.op_timeout))
            // Reconnect attempts are what callers wait on while Redis is
            // down; keep them short and let the next call try again.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(250));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_cfg)
            .map_err(|e| StoreError::Invalid(format!("redis at {addr}: {e}")))?;
        let (version_tx, _) = watch::channel(0);
        Ok(RedisStore {
            client,
            conn,
            addr,
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
