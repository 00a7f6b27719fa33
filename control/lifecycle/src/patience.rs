//! Riding out a short state-store outage, such as a Redis Sentinel failover (a few
//! seconds): the engine's store writes that fail as `Unavailable` are tried again for up
//! to `store_patience`, so a wake pauses through the failover instead of failing, and the
//! players it holds get in once the new primary is known. Zero patience (the default, and
//! a single Redis) tries once: without a failover to wait for, players hear at once that
//! the store is unreachable. Routing never waits for the store at all.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;
use warden_store::{Change, ServerRecord, StateStore, StoreError};

/// Runs `op` until it succeeds, fails otherwise than `Unavailable`, or `patience` is spent.
pub(crate) async fn patiently<T, F, Fut>(
    patience: Duration,
    what: &str,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let until = Instant::now() + patience;
    let mut pause = Duration::from_millis(100);
    let mut told = false;
    loop {
        match op().await {
            Err(e) if e.is_unavailable() && Instant::now() + pause < until => {
                if !told {
                    told = true;
                    info!(error = %e, "{what} waits for the state store (up to {} s)", patience.as_secs());
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// [`Servers::apply`](warden_store::Servers::apply) with patience. An attempt whose answer
/// was lost may still have been applied: the retry then meets its own write as a conflict
/// (the epoch one higher, the same state and reason), which counts as done.
pub(crate) async fn apply(
    store: &dyn StateStore,
    patience: Duration,
    id: &str,
    epoch: u64,
    change: &Change,
) -> Result<ServerRecord, StoreError> {
    let unsure = AtomicBool::new(false);
    let flag = &unsure;
    let result = patiently(patience, "a transition", || async move {
        let r = store.apply(id, epoch, change.clone()).await;
        if r.as_ref().is_err_and(StoreError::is_unavailable) {
            flag.store(true, Ordering::Relaxed);
        }
        r
    })
    .await;
    let mine = |rec: &ServerRecord| {
        rec.epoch == epoch.saturating_add(1)
            && rec.state == change.to
            && rec.reason == change.reason
    };
    match result {
        Err(StoreError::Conflict { actual, state, .. })
            if unsure.load(Ordering::Relaxed)
                && actual == epoch.saturating_add(1)
                && state == change.to =>
        {
            match store.get(id).await {
                Ok(Some(rec)) if mine(&rec) => Ok(rec),
                _ => Err(StoreError::Conflict {
                    id: id.to_string(),
                    expected: epoch,
                    actual,
                    state,
                }),
            }
        }
        other => other,
    }
}
