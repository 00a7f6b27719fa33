//! Hardening issue 12, finding 6: session history grew forever and every event list and
//! live stream rescanned all of it. Sessions are seeded through the real store, then the
//! real binary must prune what is older than `store.session_retention` at start, keep
//! reporting the pruned period's player time in `/v1/usage`, and list only the newest
//! events. `measure_history_cost` (ignored) gives the before/after figures.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_store::{RedisConfig, RedisStore, SessionRecord, StateStore};
use warden_tests::*;

const HOUR_MS: u64 = 3_600_000;

fn now_ms() -> u64 {
    warden_store::now_unix_ms()
}

/// Writes `n` ended sessions of `server`, each `len_ms` long, starting at `from` and
/// `step_ms` apart, through the store `open` gives.
fn seed<S: StateStore>(
    open: impl FnOnce() -> S,
    server: &str,
    n: u64,
    from: u64,
    step_ms: u64,
    len_ms: u64,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = open();
        for i in 0..n {
            let mut s = SessionRecord::start(server, format!("p{}", i % 500), "warden");
            s.start_unix_ms = from + i * step_ms;
            let id = s.id.clone();
            store.session_started(s).await.expect("session start");
            store
                .session_ended(&id, from + i * step_ms + len_ms)
                .await
                .expect("session end");
        }
    });
}

/// A managed server `hist` and the API; `store` is the `[store]` section's body.
fn history_config(store: &str, dir: &Path, retention: Option<&str>) -> String {
    let data = tempdir("history-data");
    let retention = retention
        .map(|r| format!("session_retention = \"{r}\"\n"))
        .unwrap_or_default();
    warden_tests::config(
        "",
        None,
        &format!(
            "{API}[store]\n{store}\npath = \"{}\"\n{retention}[archive]\npath = \"{}/archive\"\n{}",
            dir.display(),
            dir.display(),
            node_server("hist", "hist.test", free_port(), &data, "10m"),
        ),
    )
}

fn get(w: &Warden, token: &str, path: &str) -> Value {
    let (status, body) = w.api("GET", path, Some(token), None);
    assert_eq!(status, 200, "{path}: {body}\n{}", w.log());
    body
}

#[test]
fn retention_prunes_old_sessions_and_usage_keeps_their_time() {
    // Seeded through the Redis store (the embedded one fsyncs every write: seeding
    // thousands would take tens of seconds); both stores share the conformance suite.
    let redis = Redis::start();
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let open = || RedisStore::open(RedisConfig::new(url.clone())).expect("redis store");
    // 2,000 one-minute sessions in one hour 40 days ago (2,000 player-minutes), and 40
    // from the last hour.
    let old = (now_ms() - 40 * 86_400_000) / HOUR_MS * HOUR_MS;
    let started = Instant::now();
    seed(open, "hist", 2000, old, 1000, 60_000);
    let recent = now_ms() - HOUR_MS;
    seed(open, "hist", 40, recent, 10_000, 5_000);
    eprintln!("seeded 2,040 sessions in {:?}", started.elapsed());

    let dir = tempdir("history-store");
    let store = format!("kind = \"redis\"\nurl = \"{url}\"");
    let w = Warden::start("history", &history_config(&store, &dir, Some("30d")));
    let token = w.token("viewer");
    // The retention runs at start.
    wait_for(
        "the retention to remove the 2,000 old sessions",
        Duration::from_secs(20),
        || w.log(),
        || w.metric("warden_history_pruned_total{what=\"sessions\"}") >= 2000.0,
    );
    assert_eq!(
        w.metric("warden_history_pruned_total{what=\"sessions\"}"),
        2000.0
    );

    // Only the recent sessions are left, in the list and in the events.
    let sessions = get(&w, &token, "/v1/sessions?server=hist&limit=10000");
    let sessions = sessions.as_array().expect("a list");
    assert_eq!(sessions.len(), 40, "only the recent sessions are left");
    assert!(sessions
        .iter()
        .all(|s| s["start_unix_ms"].as_u64().unwrap_or(0) >= recent));
    let events = get(&w, &token, "/v1/events?server=hist&limit=10000");
    let players: Vec<&Value> = events
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["kind"] != "transition")
        .collect();
    assert_eq!(players.len(), 80, "40 joins and 40 leaves");
    assert!(players
        .iter()
        .all(|e| e["at_unix_ms"].as_u64().unwrap_or(0) >= recent));

    // A limit returns the newest events, oldest first.
    let all = events.as_array().expect("a list");
    let newest = get(&w, &token, "/v1/events?server=hist&limit=3");
    assert_eq!(newest.as_array().expect("a list")[..], all[all.len() - 3..]);
    let at: Vec<u64> = all
        .iter()
        .map(|e| e["at_unix_ms"].as_u64().unwrap_or(0))
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");

    // The pruned hour still bills its 2,000 player-minutes; so does a window around it.
    for (from, to) in [(old, old + HOUR_MS), (old - 86_400_000, old + 86_400_000)] {
        let usage = get(
            &w,
            &token,
            &format!("/v1/usage?server=hist&from_ms={from}&to_ms={to}"),
        );
        let minutes = usage[0]["player_minutes"].as_f64().unwrap_or(-1.0);
        assert!((minutes - 2000.0).abs() < 1e-6, "{usage}");
    }
    let usage = get(
        &w,
        &token,
        &format!("/v1/usage?server=hist&from_ms={recent}&to_ms={}", now_ms()),
    );
    let minutes = usage[0]["player_minutes"].as_f64().unwrap_or(-1.0);
    assert!((minutes - 40.0 * 5.0 / 60.0).abs() < 1e-6, "{usage}");
}
