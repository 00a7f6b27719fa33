//! Where the store's calls go: one fixed Redis (`url`), or the primary the sentinels name
//! (`sentinel`). With sentinels, a call that could not reach the primary, or met a
//! server that is no longer one (`READONLY`), forgets it, and the next call asks the
//! sentinels again: after a failover the store finds the promoted replica by itself.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionInfo};

use super::sentinel::SentinelConfig;
use super::RedisConfig;
use crate::error::StoreError;

/// A failed sentinel lookup is reused for this long, so a burst of calls during a
/// failover asks the sentinels once, not once per call.
const RESOLVE_BACKOFF: Duration = Duration::from_millis(200);

/// The server calls go to, and a connection to it.
pub(super) struct Primary {
    /// host:port only: never the URL, which may carry a password.
    pub(super) addr: String,
    pub(super) client: Client,
    pub(super) conn: ConnectionManager,
}

pub(super) struct Link {
    /// The url's credentials and database; with sentinels its address is replaced.
    template: ConnectionInfo,
    manager_cfg: ConnectionManagerConfig,
    sentinel: Option<SentinelConfig>,
    /// Bounds each sentinel and role check.
    step: Duration,
    current: Mutex<Option<Arc<Primary>>>,
    /// One lookup at a time; the others wait for its answer.
    resolving: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl Link {
    /// Prepares the link without connecting. Fails only on an unusable URL.
    pub(super) fn new(cfg: &RedisConfig) -> Result<Link, StoreError> {
        let client = Client::open(cfg.url.as_str())
            .map_err(|e| StoreError::Invalid(format!("redis url: {e}")))?;
        let step = cfg.op_timeout.min(Duration::from_secs(1));
        let manager_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(step))
            .set_response_timeout(Some(cfg.op_timeout))
            // Reconnect attempts are what callers wait on while Redis is
            // down; keep them short and let the next call try again.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(250));
        let link = Link {
            template: client.get_connection_info().clone(),
            manager_cfg,
            sentinel: cfg.sentinel.clone(),
            step,
            current: Mutex::new(None),
            resolving: tokio::sync::Mutex::new(None),
        };
        if let Some(s) = &link.sentinel {
            if s.sentinels.is_empty() || s.master_name.is_empty() {
                return Err(StoreError::Invalid(
                    "redis sentinel mode needs at least one sentinel and the master name".into(),
                ));
            }
        } else {
            let addr = client.get_connection_info().addr().to_string();
            let primary = link.primary_at(addr, client)?;
            *link.lock() = Some(primary);
        }
        Ok(link)
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Option<Arc<Primary>>> {
        self.current.lock()
    }

    fn primary_at(&self, addr: String, client: Client) -> Result<Arc<Primary>, StoreError> {
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), self.manager_cfg.clone())
                .map_err(|e| StoreError::Invalid(format!("redis at {addr}: {e}")))?;
        Ok(Arc::new(Primary { addr, client, conn }))
    }

    /// Whether the primary is found through sentinels.
    pub(super) fn is_sentinel(&self) -> bool {
        self.sentinel.is_some()
    }

    /// What error messages call the server: `p`, or else the current one.
    pub(super) fn describe(&self, p: Option<&Arc<Primary>>) -> String {
        let current = match p {
            Some(p) => Some(p.clone()),
            None => self.lock().clone(),
        };
        match (&self.sentinel, current) {
            (None, Some(p)) => format!("redis at {}", p.addr),
            (Some(s), Some(p)) => format!("redis primary '{}' at {}", s.master_name, p.addr),
            (Some(s), None) => format!("redis primary '{}'", s.master_name),
            (None, None) => "redis".to_string(),
        }
    }

    /// The server to call: the fixed one, or the primary the sentinels name (asked now if
    /// none is known). Not bounded here: callers run it inside their own timeout.
    pub(super) async fn primary(&self) -> Result<Arc<Primary>, StoreError> {
        if let Some(p) = self.lock().clone() {
            return Ok(p);
        }
        let Some(sentinel) = &self.sentinel else {
            return Err(StoreError::Invalid("redis: no address".into()));
        };
        let mut last_failure = self.resolving.lock().await;
        // Someone else may have found it while this call waited.
        if let Some(p) = self.lock().clone() {
            return Ok(p);
        }
        let unavailable = |why: &str| {
            StoreError::Unavailable(format!(
                "redis primary '{}': no primary found through the sentinels: {why}",
                sentinel.master_name
            ))
        };
        if let Some((at, why)) = last_failure.as_ref() {
            if at.elapsed() < RESOLVE_BACKOFF {
                return Err(unavailable(why));
            }
        }
        match sentinel.resolve(&self.template, self.step).await {
            Ok((addr, info)) => {
                let client = Client::open(info)
                    .map_err(|e| StoreError::Invalid(format!("redis at {addr}: {e}")))?;
                let p = self.primary_at(addr, client)?;
                tracing::info!(primary = %p.addr, name = %sentinel.master_name, "state store: redis primary found through the sentinels");
                *last_failure = None;
                *self.lock() = Some(p.clone());
                Ok(p)
            }
            Err(why) => {
                let e = unavailable(&why);
                *last_failure = Some((Instant::now(), why));
                Err(e)
            }
        }
    }

    /// `p` failed in a way that may mean it is no longer the primary: with sentinels,
    /// forget it (if it is still the current one) so the next call asks again.
    pub(super) fn lost(&self, p: &Arc<Primary>) {
        if self.sentinel.is_none() {
            return;
        }
        let mut current = self.lock();
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, p)) {
            tracing::warn!(primary = %p.addr, "state store: lost the redis primary; asking the sentinels");
            *current = None;
        }
    }
}
