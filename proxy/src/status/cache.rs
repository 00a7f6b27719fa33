//! The status cache: one backend request per key per TTL, however many pings arrive.
//!
//! - Key: normalized host + backend + client protocol. The host matters because one
//!   backend may serve different MOTDs per virtual host (Gate #247); the protocol because
//!   multi-version servers answer per protocol.
//! - TTL counts from insertion, not from the last read, so a hot entry still refreshes
//!   (Gate #913).
//! - Single flight: concurrent misses share one fetch, run in its own task so a client
//!   that hangs up doesn't cancel it for everyone.
//! - Stale-if-error: when a refresh fails, a recent-enough old answer is served instead of
//!   "offline".
//! - Bounded: at most `max_entries` keys, so random wildcard hosts can't grow it forever.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::fetch::{BackendStatus, FetchError};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub host: Arc<str>,
    pub backend: Arc<str>,
    pub protocol: i32,
}

/// How a lookup was answered.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// From the cache, within TTL.
    Hit(Arc<BackendStatus>),
    /// Fetched from the backend just now (this caller or a concurrent one).
    Fetched(Arc<BackendStatus>),
    /// The refresh failed; an older answer within the stale window.
    Stale(Arc<BackendStatus>),
    /// Nothing to serve.
    Failed(FetchError),
}

type Outcome = Option<Result<Arc<BackendStatus>, FetchError>>;

#[derive(Default)]
struct Slot {
    value: Option<(Arc<BackendStatus>, Instant)>,
    inflight: Option<watch::Receiver<Outcome>>,
}

pub struct StatusCache {
    slots: Arc<Mutex<HashMap<CacheKey, Slot>>>,
    max_entries: usize,
}

impl StatusCache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            slots: Arc::default(),
            max_entries,
        }
    }

    /// Returns the status for `key`, fetching with `fetch` only if no fresh entry exists
    /// and no fetch for the key is already running.
    pub async fn get<F, Fut>(
        &self,
        key: CacheKey,
        ttl: Duration,
        stale_for: Duration,
        fetch: F,
    ) -> Lookup
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<BackendStatus, FetchError>> + Send + 'static,
    {
        let mut rx = {
            let mut slots = self.slots.lock();
            if let Some(slot) = slots.get(&key) {
                if let Some((v, at)) = &slot.value {
                    if at.elapsed() < ttl {
                        return Lookup::Hit(v.clone());
                    }
                }
            }
            if !slots.contains_key(&key) && slots.len() >= self.max_entries {
                let horizon = ttl + stale_for;
                slots.retain(|_, s| {
                    s.inflight.is_some()
                        || s.value
                            .as_ref()
                            .is_some_and(|(_, at)| at.elapsed() < horizon)
                });
            }
            let slot = slots.entry(key.clone()).or_default();
            match &slot.inflight {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    slot.inflight = Some(rx.clone());
                    let slots = self.slots.clone();
                    let key = key.clone();
                    let fut = fetch();
                    tokio::spawn(async move {
                        let result = fut.await.map(Arc::new);
                        {
                            let mut slots = slots.lock();
                            if let Some(slot) = slots.get_mut(&key) {
                                slot.inflight = None;
                                if let Ok(v) = &result {
                                    slot.value = Some((v.clone(), Instant::now()));
                                }
                            }
                        }
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        let outcome = match rx.wait_for(|o| o.is_some()).await {
            Ok(o) => o.clone(),
            Err(_) => Some(Err(FetchError::Closed)),
        };
        match outcome {
            Some(Ok(v)) => Lookup::Fetched(v),
            Some(Err(e)) => {
                let slots = self.slots.lock();
                match slots.get(&key).and_then(|s| s.value.as_ref()) {
                    Some((v, at)) if at.elapsed() < ttl + stale_for => Lookup::Stale(v.clone()),
                    _ => Lookup::Failed(e),
                }
            }
            None => Lookup::Failed(FetchError::Closed),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::fetch::status_from_json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key() -> CacheKey {
        CacheKey {
            host: Arc::from("a.test"),
            backend: Arc::from("127.0.0.1:1"),
            protocol: 767,
        }
    }

    #[tokio::test]
    async fn single_flight_and_ttl() {
        let cache = Arc::new(StatusCache::new(100));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let cache = cache.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get(
                        key(),
                        Duration::from_secs(60),
                        Duration::ZERO,
                        move || async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            status_from_json(r#"{"description":"x"}"#)
                        },
                    )
                    .await
            }));
        }
        for t in tasks {
            assert!(matches!(
                t.await.unwrap(),
                Lookup::Fetched(_) | Lookup::Hit(_)
            ));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stale_if_error_then_failed() {
        let cache = StatusCache::new(100);
        let ok = cache
            .get(key(), Duration::ZERO, Duration::from_secs(60), || async {
                status_from_json(r#"{"description":"x"}"#)
            })
            .await;
        assert!(matches!(ok, Lookup::Fetched(_)));
        let stale = cache
            .get(key(), Duration::ZERO, Duration::from_secs(60), || async {
                Err(FetchError::Timeout)
            })
            .await;
        assert!(matches!(stale, Lookup::Stale(_)));
        let failed = cache
            .get(key(), Duration::ZERO, Duration::ZERO, || async {
                Err(FetchError::Timeout)
            })
            .await;
        assert!(matches!(failed, Lookup::Failed(_)));
    }
}
