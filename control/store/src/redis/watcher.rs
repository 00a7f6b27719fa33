//! What `watch()` runs in the background, the one part of the Redis store that is not
//! a call: the change version read on every pub/sub message (prompt) and on a timer
//! (pub/sub loses messages across reconnects). With sentinels it subscribes on whichever
//! server is the primary, and again on the new one after a failover.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::RedisError;
use tokio::sync::watch;

use super::{RedisConfig, RedisStore};
use crate::error::StoreError;

impl RedisStore {
    pub(super) async fn read_version(&self) -> Result<u64, StoreError> {
        let v: Option<u64> = self
            .query(redis::cmd("GET").arg(self.keys.version()), true)
            .await?;
        Ok(v.unwrap_or(0))
    }

    pub(super) fn start_watcher(&self) {
        let mut watcher = self.watcher.lock();
        if watcher.is_some() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "state store watch() called outside a tokio runtime; changes will not be seen"
            );
            return;
        };
        let Ok(store) = RedisStore::open(self.cfg.clone()) else {
            tracing::warn!(
                "state store watch(): cannot open a second connection; changes will not be seen"
            );
            return;
        };
        let poller = Poller {
            store,
            channel: self.keys.channel(),
            tx: self.version_tx.clone(),
            cfg: self.cfg.clone(),
        };
        *watcher = Some(rt.spawn(poller.run()));
    }
}

/// The background half of `watch()`: a dedicated pub/sub connection for
/// prompt notice, plus polling of the version counter because pub/sub loses
/// messages across reconnects. Reconnects with backoff forever.
struct Poller {
    /// Its own store handle (own connection manager, no watcher), so it holds
    /// no reference that would keep the caller's store alive.
    store: RedisStore,
    channel: String,
    tx: Arc<watch::Sender<u64>>,
    cfg: RedisConfig,
}

impl Poller {
    async fn poll(&self) {
        match self.store.read_version().await {
            // Any difference counts: after Redis lost its data the counter
            // restarts lower, and watchers must still re-read.
            Ok(v) => {
                self.tx.send_if_modified(|cur| {
                    let changed = *cur != v;
                    *cur = v;
                    changed
                });
            }
            Err(e) => tracing::debug!(error = %e, "state store version poll failed"),
        }
    }

    async fn run(self) {
        let min_backoff = Duration::from_millis(100);
        let mut backoff = min_backoff;
        loop {
            let pubsub = tokio::time::timeout(self.cfg.op_timeout, async {
                let primary = self.store.link.primary().await.map_err(|e| e.to_string())?;
                let subscribed = async {
                    let mut ps = primary.client.get_async_pubsub().await?;
                    ps.subscribe(&self.channel).await?;
                    Ok::<_, RedisError>(ps)
                };
                subscribed.await.map_err(|e| {
                    self.store.link.lost(&primary);
                    e.to_string()
                })
            })
            .await;
            match pubsub {
                Ok(Ok(mut ps)) => {
                    backoff = min_backoff;
                    // Catch up on whatever was missed while unsubscribed.
                    self.poll().await;
                    let mut messages = ps.on_message();
                    let mut tick = tokio::time::interval(self.cfg.poll_interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            msg = messages.next() => {
                                if msg.is_none() {
                                    tracing::debug!("state store pub/sub connection closed; reconnecting");
                                    break;
                                }
                            }
                            _ = tick.tick() => {}
                        }
                        // The message's payload is not trusted for the value:
                        // reading the counter keeps the sequence in order.
                        self.poll().await;
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "state store pub/sub connect failed"),
                Err(_) => tracing::debug!("state store pub/sub connect timed out"),
            }
            // Keep polling while backing off: if only pub/sub is broken,
            // watchers still see changes within the poll interval.
            let until = tokio::time::Instant::now() + backoff;
            while tokio::time::Instant::now() < until {
                self.poll().await;
                tokio::time::sleep(self.cfg.poll_interval.min(backoff)).await;
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
