//! The status cache: one backend request per key per TTL, however many pings arrive.
//!
//! - Key: normalized host + backend. The host matters because one backend may serve
//!   different MOTDs per virtual host (Gate #247). The client's protocol number is *not*
//!   part of it: a client chooses it freely, so keying on it let every ping with a new
//!   number reach the backend. Multi-version backends are served by adapting the cached
//!   answer's protocol per client instead ([`BackendStatus::frame_for`]).
//! - TTL counts from insertion, not from the last read, so a hot entry still refreshes
//!   (Gate #913).
//! - Single flight: concurrent misses share one fetch, run in its own task so a client
//!   that hangs up doesn't cancel it for everyone.
//! - Failures are cached too, for `error_ttl`: a backend that is down, answers garbage or
//!   too much is asked at most once per `error_ttl`, not once per ping.
//! - Stale-if-error: when a refresh fails, a recent-enough old answer is served instead of
//!   "offline".
//! - Bounded by entries and by bytes: expired entries go first, then the least recently
//!   stored ones, so random wildcard hosts or big answers can't grow it past its budget.

use std::collections::{BTreeMap, HashMap};
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
}

/// How long answers live and how much the cache may hold; read from the settings on every
/// lookup, so a reload applies at once.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub ttl: Duration,
    /// How long past its TTL an answer may be served while the backend is failing.
    pub stale_for: Duration,
    /// How long a failed fetch is remembered before the backend is asked again.
    pub error_ttl: Duration,
    pub max_bytes: usize,
}

/// How a lookup was answered.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// From the cache, within TTL.
    Hit(Arc<BackendStatus>),
    /// Fetched from the backend just now (this caller or a concurrent one).
    Fetched(Arc<BackendStatus>),
    /// The refresh failed (now or within `error_ttl`); an older answer within the stale
    /// window.
    Stale(Arc<BackendStatus>),
    /// The fetch failed just now; nothing to serve.
    Failed(FetchError),
    /// A fetch failed within `error_ttl`; the backend was not asked again.
    KnownFailure(FetchError),
}

type Outcome = Option<Result<Arc<BackendStatus>, FetchError>>;

struct Slot {
    value: Option<(Arc<BackendStatus>, Instant)>,
    failure: Option<(FetchError, Instant)>,
    inflight: Option<watch::Receiver<Outcome>>,
    /// Position in `Inner::order` (0 until something is stored).
    seq: u64,
    /// Bytes charged to the budget for this slot.
    cost: usize,
}

struct Inner {
    slots: HashMap<CacheKey, Slot>,
    /// Slots with a stored outcome, least recently stored first. Slots with only a fetch
    /// in flight are not in it (they can't be evicted; they count as entries).
    order: BTreeMap<u64, CacheKey>,
    next_seq: u64,
    bytes: usize,
}

pub struct StatusCache {
    inner: Arc<Mutex<Inner>>,
    max_entries: usize,
}

/// What a slot costs besides its status: the key, the bookkeeping, an error message.
fn base_cost(key: &CacheKey, failure: Option<&FetchError>) -> usize {
    const OVERHEAD: usize = 2 * std::mem::size_of::<CacheKey>()
        + std::mem::size_of::<Slot>()
        + std::mem::size_of::<u64>()
        + 64;
    OVERHEAD
        + key.host.len()
        + key.backend.len()
        + failure.map_or(0, |e| match e {
            FetchError::Connect(m) | FetchError::Malformed(m) => m.len(),
            _ => 0,
        })
}

impl Inner {
    /// Drops stored slots whose every answer is past use, oldest first.
    fn expire(&mut self, now: Instant, p: &Policy) {
        let horizon = (p.ttl + p.stale_for).max(p.error_ttl);
        while let Some((&seq, key)) = self.order.first_key_value() {
            let Some(slot) = self.slots.get(key) else {
                self.order.remove(&seq);
                continue;
            };
            let stored = slot
                .value
                .as_ref()
                .map(|(_, at)| *at)
                .max(slot.failure.as_ref().map(|(_, at)| *at));
            if slot.inflight.is_some() || stored.is_some_and(|at| now - at < horizon) {
                return;
            }
            self.evict_first();
        }
    }

    /// Removes the least recently stored slot; false if there is none.
    fn evict_first(&mut self) -> bool {
        let Some((_, key)) = self.order.pop_first() else {
            return false;
        };
        if let Some(slot) = self.slots.remove(&key) {
            self.bytes -= slot.cost;
        }
        true
    }

    /// Records a fetch's outcome (merged with what earlier answers showed), then brings
    /// the cache back within its budget.
    fn store(
        &mut self,
        key: &CacheKey,
        result: Result<BackendStatus, FetchError>,
        policy: &Policy,
        max_entries: usize,
    ) -> Result<Arc<BackendStatus>, FetchError> {
        let now = Instant::now();
        self.next_seq += 1;
        let seq = self.next_seq;
        let Some(slot) = self.slots.get_mut(key) else {
            return result.map(Arc::new);
        };
        slot.inflight = None;
        let result = match result {
            Ok(v) => {
                let v = match &slot.value {
                    Some((previous, _)) => v.learn_from(previous),
                    None => v,
                };
                let v = Arc::new(v);
                slot.value = Some((v.clone(), now));
                slot.failure = None;
                Ok(v)
            }
            Err(e) => {
                slot.failure = Some((e.clone(), now));
                Err(e)
            }
        };
        let cost = base_cost(key, slot.failure.as_ref().map(|(e, _)| e))
            + slot.value.as_ref().map_or(0, |(v, _)| v.cost());
        self.bytes = self.bytes - slot.cost + cost;
        slot.cost = cost;
        let old = std::mem::replace(&mut slot.seq, seq);
        self.order.remove(&old);
        self.order.insert(seq, key.clone());
        self.expire(now, policy);
        // The answer just stored stays even if it alone is over budget: evicting it would
        // send the next ping to the backend again.
        while (self.bytes > policy.max_bytes || self.slots.len() > max_entries)
            && self.order.len() > 1
            && self.evict_first()
        {}
        result
    }
}

impl StatusCache {
    pub fn new(max_entries: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                slots: HashMap::new(),
                order: BTreeMap::new(),
                next_seq: 0,
                bytes: 0,
            })),
            max_entries,
        }
    }

    /// Returns the status for `key`, fetching with `fetch` only if no fresh answer, no
    /// recent failure and no fetch already running exist for the key.
    pub async fn get<F, Fut>(&self, key: CacheKey, policy: Policy, fetch: F) -> Lookup
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<BackendStatus, FetchError>> + Send + 'static,
    {
        let mut rx = {
            let mut inner = self.inner.lock();
            let now = Instant::now();
            inner.expire(now, &policy);
            if let Some(slot) = inner.slots.get(&key) {
                if let Some((v, at)) = &slot.value {
                    if now - *at < policy.ttl {
                        return Lookup::Hit(v.clone());
                    }
                }
                if let Some((e, at)) = &slot.failure {
                    if now - *at < policy.error_ttl {
                        return match &slot.value {
                            Some((v, at)) if now - *at < policy.ttl + policy.stale_for => {
                                Lookup::Stale(v.clone())
                            }
                            _ => Lookup::KnownFailure(e.clone()),
                        };
                    }
                }
            } else if inner.slots.len() >= self.max_entries && !inner.evict_first() {
                return Lookup::KnownFailure(FetchError::Busy);
            }
            let slot = inner.slots.entry(key.clone()).or_insert_with(|| Slot {
                value: None,
                failure: None,
                inflight: None,
                seq: 0,
                cost: 0,
            });
            match &slot.inflight {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    slot.inflight = Some(rx.clone());
                    let cost = base_cost(&key, None);
                    if slot.cost == 0 {
                        slot.cost = cost;
                        inner.bytes += cost;
                    }
                    let inner = self.inner.clone();
                    let max_entries = self.max_entries;
                    let key = key.clone();
                    let fut = fetch();
                    tokio::spawn(async move {
                        let result = fut.await;
                        let result = inner.lock().store(&key, result, &policy, max_entries);
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
                let inner = self.inner.lock();
                match inner.slots.get(&key).and_then(|s| s.value.as_ref()) {
                    Some((v, at)) if at.elapsed() < policy.ttl + policy.stale_for => {
                        Lookup::Stale(v.clone())
                    }
                    _ => Lookup::Failed(e),
                }
            }
            None => Lookup::Failed(FetchError::Closed),
        }
    }

    /// Keys held (answers, failures and fetches in flight) and the bytes charged for them.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.slots.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::status::status_from_json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(host: &str) -> CacheKey {
        CacheKey {
            host: Arc::from(host),
            backend: Arc::from("127.0.0.1:1"),
        }
    }

    fn policy(ttl: u64, stale_for: u64, error_ttl: u64) -> Policy {
        Policy {
            ttl: Duration::from_secs(ttl),
            stale_for: Duration::from_secs(stale_for),
            error_ttl: Duration::from_secs(error_ttl),
            max_bytes: 1 << 30,
        }
    }

    fn status(json: &str) -> Result<BackendStatus, FetchError> {
        Ok(BackendStatus::new(
            status_from_json(json, 1 << 20).unwrap(),
            767,
        ))
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
                    .get(key("a.test"), policy(60, 0, 0), move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        status(r#"{"description":"x"}"#)
                    })
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
            .get(key("a.test"), policy(0, 60, 0), || async {
                status(r#"{"description":"x"}"#)
            })
            .await;
        assert!(matches!(ok, Lookup::Fetched(_)));
        let stale = cache
            .get(key("a.test"), policy(0, 60, 0), || async {
                Err(FetchError::Timeout)
            })
            .await;
        assert!(matches!(stale, Lookup::Stale(_)));
        let failed = cache
            .get(key("a.test"), policy(0, 0, 0), || async {
                Err(FetchError::Timeout)
            })
            .await;
        assert!(matches!(failed, Lookup::Failed(_)));
    }

    #[tokio::test]
    async fn failures_are_remembered_for_error_ttl() {
        let cache = StatusCache::new(100);
        let calls = Arc::new(AtomicUsize::new(0));
        for i in 0..20 {
            let calls = calls.clone();
            let got = cache
                .get(key("a.test"), policy(5, 0, 60), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(FetchError::Malformed("{broken".into()))
                })
                .await;
            match i {
                0 => assert!(matches!(got, Lookup::Failed(_))),
                _ => assert!(matches!(got, Lookup::KnownFailure(_))),
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Past error_ttl the backend is asked again.
        let again = cache
            .get(key("a.test"), policy(5, 0, 0), || async {
                status(r#"{"description":"x"}"#)
            })
            .await;
        assert!(matches!(again, Lookup::Fetched(_)));
    }

    #[tokio::test]
    async fn bounded_by_entries_and_bytes() {
        let cache = StatusCache::new(8);
        for i in 0..100 {
            cache
                .get(key(&format!("h{i}.test")), policy(60, 0, 60), || async {
                    status(r#"{"description":"x"}"#)
                })
                .await;
            assert!(cache.usage().0 <= 8);
        }
        let big = format!(r#"{{"description":"{}"}}"#, "x".repeat(10_000));
        let mut p = policy(60, 0, 60);
        p.max_bytes = 50_000;
        for i in 0..100 {
            let big = big.clone();
            let got = cache
                .get(key(&format!("b{i}.test")), p, move || async move {
                    status(&big)
                })
                .await;
            assert!(matches!(got, Lookup::Fetched(_)));
            let (_, bytes) = cache.usage();
            assert!(bytes <= 50_000, "{bytes} bytes");
        }
        // The newest answer is kept, the oldest went first.
        let hit = cache
            .get(key("b99.test"), p, || async { Err(FetchError::Timeout) })
            .await;
        assert!(matches!(hit, Lookup::Hit(_)));
        // Even one answer over the whole budget is kept (until the next one comes).
        p.max_bytes = 1;
        let got = cache
            .get(key("huge.test"), p, || async {
                status(r#"{"description":"x"}"#)
            })
            .await;
        assert!(matches!(got, Lookup::Fetched(_)));
        let hit = cache
            .get(key("huge.test"), p, || async { Err(FetchError::Timeout) })
            .await;
        assert!(matches!(hit, Lookup::Hit(_)));
        assert_eq!(cache.usage().0, 1);
    }

    #[tokio::test]
    async fn expired_entries_are_dropped() {
        let cache = StatusCache::new(100);
        for i in 0..10 {
            cache
                .get(key(&format!("h{i}.test")), policy(0, 0, 0), || async {
                    status(r#"{"description":"x"}"#)
                })
                .await;
        }
        assert!(cache.usage().0 <= 1, "{:?}", cache.usage());
    }
}
