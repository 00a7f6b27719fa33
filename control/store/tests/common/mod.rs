//! Shared by the store tests: a real `redis-server` per test (on its own free
//! port, killed at the end) and the conformance suite both stores must pass.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden_store::{
    now_unix_ms, ArchiveRef, ArchiveUpdate, Change, ServerRecord, ServerState, SessionRecord,
    StateStore, StoreError, TransitionFilter, WakeLease,
};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}); the Redis store tests need it: \
                     apt-get install -y redis-server"
                )
            });
        let mut server = RedisServer {
            port,
            child: Some(child),
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("redis-server on port {} exited: {status}", self.port);
                }
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not come up within 10 s",
            self.port
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Sends a signal (e.g. "STOP" to freeze the server, "CONT" to resume it).
    pub fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("server running");
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} failed");
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn wait_for_version(
    rx: &mut tokio::sync::watch::Receiver<u64>,
    at_least: u64,
    within: Duration,
) -> u64 {
    let r = tokio::time::timeout(within, async {
        rx.wait_for(|v| *v >= at_least).await.map(|v| *v)
    })
    .await;
    match r {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => panic!("watch channel closed"),
        Err(_) => panic!(
            "watch did not reach version {at_least} within {within:?} (at {})",
            *rx.borrow()
        ),
    }
}

fn lease_of_someone_else(l: &WakeLease) -> WakeLease {
    WakeLease {
        token: format!("{}-not-mine", l.token),
        ..l.clone()
    }
}

/// The behaviour both stores must share. Expects an empty store.
pub async fn conformance(store: &dyn StateStore) {
    servers(store).await;
    compare_and_set(store).await;
    concurrent_compare_and_set(store).await;
    transition_log(store).await;
    durations(store).await;
    sessions(store).await;
    wake_lock(store).await;
    change_version(store).await;
    usage(store).await;
    documents_and_logs(store).await;
}

async fn documents_and_logs(store: &dyn StateStore) {
    let v0 = store.version().await.unwrap();
    store
        .put_doc("token", "t1", r#"{"n":1}"#, true)
        .await
        .unwrap();
    store
        .put_doc("token", "t0", r#"{"n":0}"#, true)
        .await
        .unwrap();
    store
        .put_doc("server", "t1", r#"{"other":true}"#, true)
        .await
        .unwrap();
    let err = store.put_doc("token", "t1", "{}", true).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    store
        .put_doc("token", "t1", r#"{"n":2}"#, false)
        .await
        .unwrap();
    assert!(
        store.version().await.unwrap() > v0,
        "doc writes bump the version"
    );
    assert_eq!(
        store.get_doc("token", "t1").await.unwrap().as_deref(),
        Some(r#"{"n":2}"#)
    );
    let ids: Vec<String> = store
        .list_docs("token")
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["t0", "t1"], "sorted, and only this kind");
    assert!(store.delete_doc("token", "t0").await.unwrap());
    assert!(!store.delete_doc("token", "t0").await.unwrap());
    assert_eq!(store.get_doc("token", "t0").await.unwrap(), None);
    assert!(store.put_doc("token", "bad:id", "{}", true).await.is_err());

    for i in 0..5 {
        store.append_log("audit", &format!("{i}")).await.unwrap();
    }
    assert_eq!(store.read_log("audit", 3).await.unwrap(), ["2", "3", "4"]);
    assert_eq!(store.read_log("audit", 100).await.unwrap().len(), 5);
    assert!(store.read_log("other", 10).await.unwrap().is_empty());
}

async fn servers(store: &dyn StateStore) {
    store.health().await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), None);
    let a = ServerRecord::new("a", ServerState::Sleeping, "configured");
    assert_eq!(store.put_new(a.clone()).await.unwrap(), a);
    assert_eq!(store.get("a").await.unwrap(), Some(a.clone()));
    let err = store.put_new(a.clone()).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    store
        .put_new(ServerRecord::new("b", ServerState::Archived, "configured"))
        .await
        .unwrap();
    let ids: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(store.delete("b").await.unwrap());
    assert!(!store.delete("b").await.unwrap());
    assert_eq!(store.get("b").await.unwrap(), None);
    let err = store
        .put_new(ServerRecord::new("x:y", ServerState::Sleeping, ""))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
}

async fn compare_and_set(store: &dyn StateStore) {
    let r = store
        .transition("a", 0, ServerState::Starting, "login by Alex")
        .await
        .unwrap();
    assert_eq!(
        (r.state, r.epoch, r.reason.as_str()),
        (ServerState::Starting, 1, "login by Alex")
    );

    // Stale epoch: refused, nothing written.
    let err = store
        .transition("a", 0, ServerState::Failed, "stale")
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict {
            id,
            expected,
            actual,
            state,
        } => {
            assert_eq!(
                (id.as_str(), expected, actual, state),
                ("a", 0, 1, ServerState::Starting)
            );
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(store.get("a").await.unwrap().unwrap(), r);
    let err = store
        .transition("nope", 0, ServerState::Active, "")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");

    let r = store
        .transition("a", 1, ServerState::Active, "ready")
        .await
        .unwrap();
    assert_eq!(r.epoch, 2);

    // The archive reference travels with the state change.
    let archive = ArchiveRef {
        location: "s3://bucket/a/1".into(),
        manifest_sha256: "ab".repeat(32),
        bytes: 1234,
    };
    let r = store
        .apply(
            "a",
            2,
            Change::to(ServerState::Stopping, "idle")
                .with_archive(ArchiveUpdate::Set(archive.clone())),
        )
        .await
        .unwrap();
    assert_eq!(r.archive.as_ref(), Some(&archive));
    let r = store
        .transition("a", 3, ServerState::Sleeping, "stopped")
        .await
        .unwrap();
    assert_eq!(
        r.archive.as_ref(),
        Some(&archive),
        "Keep must keep the archive"
    );
    let got = store.get("a").await.unwrap().unwrap();
    assert_eq!(got, r);
    let r = store
        .apply(
            "a",
            4,
            Change::to(ServerState::Sleeping, "archive dropped").with_archive(ArchiveUpdate::Clear),
        )
        .await
        .unwrap();
    assert_eq!((r.epoch, r.archive), (5, None));
}

async fn concurrent_compare_and_set(store: &dyn StateStore) {
    store
        .put_new(ServerRecord::new("c", ServerState::Sleeping, "configured"))
        .await
        .unwrap();
    // Several rounds, since whether the racers' reads interleave is up to
    // the scheduler; in every round exactly one of 20 may win.
    let reasons: Vec<String> = (0..20).map(|i| format!("waker {i}")).collect();
    for round in 0..10u64 {
        let to = if round % 2 == 0 {
            ServerState::Starting
        } else {
            ServerState::Sleeping
        };
        let attempts = reasons.iter().map(|r| store.transition("c", round, to, r));
        let results = futures_util::future::join_all(attempts).await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Conflict { .. })))
            .count();
        assert_eq!((won, conflicts), (1, 19), "round {round}: {results:?}");
    }
    let log = store
        .transitions(&TransitionFilter {
            server: Some("c".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let epochs: Vec<u64> = log.iter().map(|t| t.epoch).collect();
    assert_eq!(
        epochs,
        (0..=10).collect::<Vec<u64>>(),
        "one creation plus one change per round"
    );
    let r = store.get("c").await.unwrap().unwrap();
    assert_eq!((r.epoch, r.state), (10, ServerState::Sleeping));
}

async fn transition_log(store: &dyn StateStore) {
    let only_a = TransitionFilter {
        server: Some("a".into()),
        ..Default::default()
    };
    let log = store.transitions(&only_a).await.unwrap();
    use ServerState::*;
    let steps: Vec<(Option<ServerState>, ServerState, u64)> =
        log.iter().map(|t| (t.from, t.to, t.epoch)).collect();
    assert_eq!(
        steps,
        [
            (None, Sleeping, 0),
            (Some(Sleeping), Starting, 1),
            (Some(Starting), Active, 2),
            (Some(Active), Stopping, 3),
            (Some(Stopping), Sleeping, 4),
            (Some(Sleeping), Sleeping, 5),
        ]
    );
    assert!(log.iter().all(|t| t.server == "a"));
    assert_eq!(log[0].duration_ms, None);
    assert!(log[1..].iter().all(|t| t.duration_ms.is_some()));
    assert!(log.windows(2).all(|w| w[0].at_unix_ms <= w[1].at_unix_ms));
    assert_eq!(log[1].reason, "login by Alex");

    // Newest last; `limit` keeps the newest.
    let last2 = store
        .transitions(&TransitionFilter {
            limit: 2,
            ..only_a.clone()
        })
        .await
        .unwrap();
    assert_eq!(last2, log[4..].to_vec());

    // Unfiltered: every server's changes ("b" was deleted, its history stays).
    let all = store
        .transitions(&TransitionFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), log.len() + 1 + 11, "{all:?}");
    assert!(all.iter().any(|t| t.server == "b"));

    let future = store
        .transitions(&TransitionFilter {
            since_ms: Some(now_unix_ms() + 60_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(future.is_empty());
    let since = store
        .transitions(&TransitionFilter {
            since_ms: Some(log[5].at_unix_ms),
            ..only_a
        })
        .await
        .unwrap();
    assert!(!since.is_empty() && since.iter().all(|t| t.at_unix_ms >= log[5].at_unix_ms));
    assert_eq!(since.last(), log.last());
}

async fn durations(store: &dyn StateStore) {
    use ServerState::*;
    store
        .put_new(ServerRecord::new("d", Sleeping, ""))
        .await
        .unwrap();
    let mut epoch = 0;
    for start_ms in [40u64, 80, 120] {
        epoch = store
            .transition("d", epoch, Starting, "wake")
            .await
            .unwrap()
            .epoch;
        tokio::time::sleep(Duration::from_millis(start_ms)).await;
        epoch = store
            .transition("d", epoch, Active, "ready")
            .await
            .unwrap()
            .epoch;
        epoch = store
            .transition("d", epoch, Sleeping, "idle")
            .await
            .unwrap()
            .epoch;
    }
    // Oldest first, each at least as long as its start took; no upper
    // bounds, since a loaded CI machine may oversleep.
    let all = store
        .recent_durations(Some("d"), Starting, Active, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    for (got, planned) in all.iter().zip([40, 80, 120]) {
        assert!(*got >= Duration::from_millis(planned), "{all:?}");
    }
    let from_log: Vec<Duration> = store
        .transitions(&TransitionFilter {
            server: Some("d".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|t| t.from == Some(Starting) && t.to == Active)
        .map(|t| Duration::from_millis(t.duration_ms.unwrap()))
        .collect();
    assert_eq!(all, from_log);
    let last2 = store
        .recent_durations(Some("d"), Starting, Active, 2)
        .await
        .unwrap();
    assert_eq!(last2, all[1..].to_vec());
    assert_eq!(
        store
            .recent_durations(None, Starting, Active, 10)
            .await
            .unwrap()
            .len(),
        4
    );
    assert!(store
        .recent_durations(Some("d"), Restoring, Starting, 5)
        .await
        .unwrap()
        .is_empty());
}

fn session(id: &str, server: &str, appliance: &str) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        player_uuid: Some("069a79f4-44e9-4726-a5be-fca90e38aaf5".into()),
        ..SessionRecord::start(server, "Notch", appliance)
    }
}

async fn sessions(store: &dyn StateStore) {
    store
        .session_started(session("s1", "a", "edge-1"))
        .await
        .unwrap();
    store
        .session_started(session("s2", "a", "edge-2"))
        .await
        .unwrap();
    store
        .session_started(session("s3", "c", "edge-1"))
        .await
        .unwrap();
    let err = store
        .session_started(session("s1", "a", "edge-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    store.heartbeat("edge-1").await.unwrap();
    assert_eq!(store.live_count("a").await.unwrap(), 2);
    assert_eq!(store.live_count("c").await.unwrap(), 1);
    assert_eq!(store.live_count("d").await.unwrap(), 0);
    assert_eq!(store.sessions(Some("a"), true).await.unwrap().len(), 2);

    let end = now_unix_ms() + 5;
    let s1 = store.session_ended("s1", end).await.unwrap();
    assert_eq!(s1.end_unix_ms, Some(end));
    // Idempotent: a repeat (even with another time) changes nothing.
    assert_eq!(store.session_ended("s1", end + 1000).await.unwrap(), s1);
    assert_eq!(store.live_count("a").await.unwrap(), 1);
    assert_eq!(
        store
            .get("a")
            .await
            .unwrap()
            .unwrap()
            .last_session_end_unix_ms,
        Some(end)
    );
    let open: Vec<String> = store
        .sessions(Some("a"), true)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(open, ["s2"]);
    assert_eq!(store.sessions(Some("a"), false).await.unwrap().len(), 2);
    assert_eq!(store.sessions(None, false).await.unwrap().len(), 3);
    let err = store.session_ended("missing", end).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");

    // The last session end survives later state changes of the server.
    let epoch = store.get("a").await.unwrap().unwrap().epoch;
    let r = store
        .transition("a", epoch, ServerState::Sleeping, "still asleep")
        .await
        .unwrap();
    assert_eq!(r.last_session_end_unix_ms, Some(end));
    assert_eq!(
        store
            .get("a")
            .await
            .unwrap()
            .unwrap()
            .last_session_end_unix_ms,
        Some(end)
    );

    // An appliance restarting after a crash closes what it left open.
    assert_eq!(
        store.end_appliance_sessions("edge-2", end).await.unwrap(),
        1
    );
    assert_eq!(store.live_count("a").await.unwrap(), 0);
    assert_eq!(store.sessions(None, true).await.unwrap().len(), 1);
}

async fn wake_lock(store: &dyn StateStore) {
    let ttl = Duration::from_secs(10);
    let l1 = store
        .acquire_wake("a", "edge-1", ttl)
        .await
        .unwrap()
        .expect("free lock");
    assert_eq!(l1.server, "a");
    assert!(store
        .acquire_wake("a", "edge-2", ttl)
        .await
        .unwrap()
        .is_none());
    assert!(!store
        .release_wake(&lease_of_someone_else(&l1))
        .await
        .unwrap());
    assert!(!store
        .renew_wake(&lease_of_someone_else(&l1), ttl)
        .await
        .unwrap());
    assert!(store.renew_wake(&l1, ttl).await.unwrap());
    // Other servers are independent.
    let other = store
        .acquire_wake("c", "edge-2", ttl)
        .await
        .unwrap()
        .expect("other server");
    assert!(store.release_wake(&l1).await.unwrap());
    assert!(!store.release_wake(&l1).await.unwrap());
    assert!(!store.renew_wake(&l1, ttl).await.unwrap());

    let l2 = store
        .acquire_wake("a", "edge-2", ttl)
        .await
        .unwrap()
        .expect("released");
    assert!(l2.fencing_epoch > l1.fencing_epoch);
    assert_ne!(l2.token, l1.token);
    assert!(store.release_wake(&l2).await.unwrap());
    assert!(store.release_wake(&other).await.unwrap());

    // A lease that ran out is lost: anyone may take it, the old holder can
    // neither renew nor release it.
    let short = store
        .acquire_wake("a", "edge-1", Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(!store.renew_wake(&short, ttl).await.unwrap());
    let l3 = store
        .acquire_wake("a", "edge-2", ttl)
        .await
        .unwrap()
        .expect("expired");
    assert!(l3.fencing_epoch > short.fencing_epoch && short.fencing_epoch > l2.fencing_epoch);
    assert!(!store.release_wake(&short).await.unwrap());
    assert!(store.release_wake(&l3).await.unwrap());

    // 20 concurrent acquirers: exactly one wins.
    let owners: Vec<String> = (0..20).map(|i| format!("waker-{i}")).collect();
    let results =
        futures_util::future::join_all(owners.iter().map(|o| store.acquire_wake("d", o, ttl)))
            .await;
    let winners: Vec<WakeLease> = results.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(winners.len(), 1);
    assert!(store.release_wake(&winners[0]).await.unwrap());
}

async fn change_version(store: &dyn StateStore) {
    let mut rx = store.watch();
    let v0 = store.version().await.unwrap();
    assert!(v0 > 0, "writes so far must have bumped the version");
    let epoch = store.get("c").await.unwrap().unwrap().epoch;
    store
        .transition("c", epoch, ServerState::Active, "ready")
        .await
        .unwrap();
    let v1 = store.version().await.unwrap();
    assert!(v1 > v0);
    assert!(wait_for_version(&mut rx, v1, Duration::from_secs(3)).await >= v1);
    // Failed writes do not count as changes.
    let _ = store
        .transition("c", epoch, ServerState::Failed, "stale")
        .await
        .unwrap_err();
    assert_eq!(store.version().await.unwrap(), v1);
}

async fn usage(store: &dyn StateStore) {
    use ServerState::*;
    store
        .put_new(ServerRecord::new("u", Active, ""))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.transition("u", 0, Sleeping, "idle").await.unwrap();
    let log = store
        .transitions(&TransitionFilter {
            server: Some("u".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let (t0, t1) = (log[0].at_unix_ms, log[1].at_unix_ms);
    assert!(t1 - t0 >= 50);
    // A one-minute session inside the window, starting a minute after the stop.
    let mut s = session("su", "u", "edge-1");
    s.start_unix_ms = t1 + 60_000;
    store.session_started(s).await.unwrap();
    store.session_ended("su", t1 + 120_000).await.unwrap();

    let usage = store.usage("u", t0, t1 + 3_600_000, 4.0).await.unwrap();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    assert!(
        close(usage.active_gb_seconds, (t1 - t0) as f64 / 1000.0 * 4.0),
        "{usage:?}"
    );
    assert!(close(usage.sleeping_gb_hours, 4.0), "{usage:?}");
    assert!(close(usage.player_minutes, 1.0), "{usage:?}");
    assert!(close(usage.archived_byte_hours, 0.0));
}
