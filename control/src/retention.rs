//! Session retention (hardening issue 12, finding 6): without it every login stayed in
//! the store forever. Once at start and then hourly, ended sessions older than
//! `store.session_retention` are removed (their player time kept as hourly aggregates, so
//! `/v1/usage` stays right) and so are feed entries recorded before then.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts, Registry};
use tracing::{info, warn};
use warden_store::{now_unix_ms, StateStore, StoreError};

/// How often the retention runs after the run at start.
const EVERY: Duration = Duration::from_secs(3600);
/// Sessions (and feed entries) removed per store call, so no call holds the store long.
const BATCH: usize = 1000;

/// Registers `warden_history_pruned_total{what}` and starts the hourly retention.
pub fn spawn(
    rt: &tokio::runtime::Handle,
    store: Arc<dyn StateStore>,
    keep: Duration,
    registry: &Registry,
) -> Result<(), prometheus::Error> {
    let pruned = IntCounterVec::new(
        Opts::new(
            "warden_history_pruned_total",
            "Sessions and event-feed entries removed by store.session_retention",
        ),
        &["what"],
    )?;
    registry.register(Box::new(pruned.clone()))?;
    rt.spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = prune(store.as_ref(), keep, &pruned).await {
                warn!(error = %e, "session retention did not finish; retrying in an hour");
            }
        }
    });
    Ok(())
}

/// Removes everything older than `keep`, in batches.
async fn prune(
    store: &dyn StateStore,
    keep: Duration,
    pruned: &IntCounterVec,
) -> Result<(), StoreError> {
    let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
    let before = now_unix_ms().saturating_sub(keep_ms);
    let (mut sessions, mut feed) = (0, 0);
    loop {
        let p = store.prune_history(before, BATCH).await?;
        pruned.with_label_values(&["sessions"]).inc_by(p.sessions);
        pruned
            .with_label_values(&["feed_entries"])
            .inc_by(p.feed_entries);
        sessions += p.sessions;
        feed += p.feed_entries;
        if !p.more(BATCH) {
            break;
        }
        // Let the rest of the control plane in between batches.
        tokio::task::yield_now().await;
    }
    if sessions + feed > 0 {
        info!(
            sessions,
            feed_entries = feed,
            retention = %humantime::format_duration(keep),
            "history older than the retention removed"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, DEFAULT_SESSION_RETENTION};

    #[test]
    fn the_retention_defaults_to_30_days_and_is_at_least_an_hour() {
        let path = Path::new("warden.toml");
        let cfg = parse(path, "").unwrap();
        assert_eq!(cfg.store.session_retention, DEFAULT_SESSION_RETENTION);
        let cfg = parse(path, "[store]\nsession_retention = \"90d\"\n").unwrap();
        assert_eq!(cfg.store.session_retention.as_secs(), 90 * 86_400);
        let e = parse(path, "[store]\nsession_retention = \"10m\"\n").unwrap_err();
        assert!(e.to_string().contains("session_retention"), "{e}");
    }
}
