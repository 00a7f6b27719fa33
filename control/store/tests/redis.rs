//! The Redis store against the shared conformance suite, plus what only a
//! shared store must do: exclusivity and notifications across instances,
//! dead appliances dropping out of the live count, and riding out a Redis
//! restart. Every test runs its own `redis-server` on a free port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::wait_for_version;
use warden_store::{
    RedisConfig, RedisStore, ServerRecord, ServerState, Servers, SessionRecord, Sessions,
    StateStore, StoreError, WakeLease, WakeLock,
};
use warden_testkit::{free_port, Redis};

fn store(server: &Redis) -> RedisStore {
    RedisStore::open(RedisConfig::new(server.url())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_conformance() {
    let server = Redis::start();
    common::conformance(&store(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_prefixes_keep_fleets_apart() {
    let server = Redis::start();
    let a = store(&server);
    let b = RedisStore::open(RedisConfig {
        prefix: "other".into(),
        ..RedisConfig::new(server.url())
    })
    .unwrap();
    a.put_new(ServerRecord::new("s", ServerState::Sleeping, ""))
        .await
        .unwrap();
    assert_eq!(b.get("s").await.unwrap(), None);
    assert_eq!(b.version().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wake_lock_is_exclusive_across_instances() {
    let server = Redis::start();
    let stores = [Arc::new(store(&server)), Arc::new(store(&server))];
    let ttl = Duration::from_secs(10);

    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            s.acquire_wake("srv", &format!("edge-{i}"), ttl).await
        }));
    }
    let mut winners: Vec<WakeLease> = Vec::new();
    for t in tasks {
        if let Some(l) = t.await.unwrap().unwrap() {
            winners.push(l);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");

    // The other instance cannot release or renew it.
    let forged = WakeLease {
        token: "edge-99:forged".into(),
        ..winners[0].clone()
    };
    assert!(!stores[1].release_wake(&forged).await.unwrap());
    assert!(!stores[0].renew_wake(&forged, ttl).await.unwrap());
    assert!(stores[0]
        .acquire_wake("srv", "late", ttl)
        .await
        .unwrap()
        .is_none());

    // Successive leases, alternating instances: fencing epochs strictly rise.
    let mut last = winners[0].fencing_epoch;
    assert!(
        stores[1].release_wake(&winners[0]).await.unwrap(),
        "the token, not the instance, owns the lease"
    );
    for i in 0..6 {
        let s = &stores[i % 2];
        let l = s
            .acquire_wake("srv", "edge", ttl)
            .await
            .unwrap()
            .expect("free");
        assert!(l.fencing_epoch > last, "{} after {last}", l.fencing_epoch);
        last = l.fencing_epoch;
        assert!(stores[(i + 1) % 2]
            .acquire_wake("srv", "other", ttl)
            .await
            .unwrap()
            .is_none());
        assert!(s.release_wake(&l).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_watch_sees_changes_from_another_instance() {
    let server = Redis::start();
    let watcher = store(&server);
    let writer = store(&server);
    let mut rx = watcher.watch();
    for i in 0..3 {
        let started = Instant::now();
        writer
            .put_new(ServerRecord::new(
                format!("s{i}"),
                ServerState::Sleeping,
                "",
            ))
            .await
            .unwrap();
        let v = writer.version().await.unwrap();
        wait_for_version(&mut rx, v, Duration::from_secs(3)).await;
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dead_appliance_stops_counting() {
    let server = Redis::start();
    let cfg = RedisConfig {
        live_ttl: Duration::from_millis(400),
        ..RedisConfig::new(server.url())
    };
    let dead = RedisStore::open(cfg.clone()).unwrap();
    let alive = RedisStore::open(cfg).unwrap();
    dead.session_started(SessionRecord::start("srv", "Alex", "edge-dead"))
        .await
        .unwrap();
    alive
        .session_started(SessionRecord::start("srv", "Steve", "edge-alive"))
        .await
        .unwrap();
    assert_eq!(alive.live_count("srv").await.unwrap(), 2);

    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        alive.heartbeat("edge-alive").await.unwrap();
    }
    assert_eq!(
        alive.live_count("srv").await.unwrap(),
        1,
        "only the heartbeating appliance counts"
    );

    // An appliance that was merely paused gets its count back on its next heartbeat.
    dead.heartbeat("edge-dead").await.unwrap();
    assert_eq!(alive.live_count("srv").await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_reports_unavailable() {
    let port = free_port();
    let started = Instant::now();
    let store = RedisStore::open(RedisConfig::new(format!("redis://127.0.0.1:{port}/"))).unwrap();
    let err = store.health().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("connection refused"),
        "{msg}"
    );
}

/// Every call during the outage fails promptly with `Unavailable`.
async fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) {
    let started = Instant::now();
    let r = f.await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "{what} took {took:?} while Redis was down"
    );
    match r {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("{what} while Redis was down: expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_is_survived() {
    let mut server = Redis::start();
    let port = server.port;
    let store = store(&server);
    let other = self::store(&server);
    let mut rx = store.watch();
    store
        .put_new(ServerRecord::new("srv", ServerState::Sleeping, ""))
        .await
        .unwrap();
    let v = store.version().await.unwrap();
    wait_for_version(&mut rx, v, Duration::from_secs(3)).await;

    server.kill();
    for _ in 0..2 {
        assert_unavailable("health", store.health()).await;
        assert_unavailable("get", store.get("srv")).await;
        assert_unavailable("list", store.list()).await;
        assert_unavailable(
            "transition",
            store.transition("srv", 0, ServerState::Starting, "login"),
        )
        .await;
        assert_unavailable(
            "acquire_wake",
            store.acquire_wake("srv", "edge", Duration::from_secs(5)),
        )
        .await;
        assert_unavailable("live_count", store.live_count("srv")).await;
        assert_unavailable("version", store.version()).await;
    }

    // Same port, empty data (no persistence): the same store instances work
    // again without being reopened.
    let _server = Redis::start_on(port);
    assert_eq!(
        store.get("srv").await.unwrap(),
        None,
        "reads retry once onto the new connection"
    );
    let mut wrote = false;
    for _ in 0..2 {
        // A write may be refused once while the manager's reconnect settles.
        match store
            .put_new(ServerRecord::new("srv", ServerState::Sleeping, ""))
            .await
        {
            Ok(_) => {
                wrote = true;
                break;
            }
            Err(StoreError::Unavailable(_)) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(wrote, "writes must succeed again after Redis is back");
    store.health().await.unwrap();
    assert!(store
        .acquire_wake("srv", "edge", Duration::from_secs(5))
        .await
        .unwrap()
        .is_some());

    // The watcher reconnected too: it sees another instance's change.
    other.health().await.ok();
    other
        .transition("srv", 0, ServerState::Starting, "login")
        .await
        .unwrap();
    let v = other.version().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        if *rx.borrow_and_update() == v {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "watch stuck at {} after restart, want {v}",
            *rx.borrow()
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_server_times_out() {
    // A server that accepts nothing and answers nothing (frozen, or a network
    // black hole) must not hang callers either.
    let server = Redis::start();
    let store = store(&server);
    store
        .put_new(ServerRecord::new("srv", ServerState::Sleeping, ""))
        .await
        .unwrap();
    server.signal("STOP");
    assert_unavailable("get", store.get("srv")).await;
    assert_unavailable(
        "transition",
        store.transition("srv", 0, ServerState::Starting, "login"),
    )
    .await;
    server.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.get("srv").await {
            Ok(r) => {
                // The timed-out transition may or may not have been applied;
                // either way the record is consistent with its epoch.
                let r = r.unwrap();
                assert!(
                    matches!(
                        (r.state, r.epoch),
                        (ServerState::Sleeping, 0) | (ServerState::Starting, 1)
                    ),
                    "{r:?}"
                );
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "still failing after resume: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_indexes_the_sessions_of_an_older_store() {
    let server = Redis::start();
    // What an earlier version wrote: the session hash, but no time index.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let s = common::legacy_session();
    let _: i64 = redis::cmd("HSET")
        .arg("warden:sessions")
        .arg(&s.id)
        .arg(serde_json::to_string(&s).unwrap())
        .query_async(&mut conn)
        .await
        .unwrap();
    common::legacy_sessions_are_indexed(&store(&server)).await;
}

/// Two processes claiming one node id: the live one keeps it, the other is told why; once
/// the lease lapses (the first process died) the id is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refuses_a_live_duplicate_node_id() {
    use warden_store::Nodes;
    let server = Redis::start();
    let stores = [Arc::new(store(&server)), Arc::new(store(&server))];
    // At the same instant, from two connections: exactly one registers.
    let mut tasks = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.register_node(common::node("dup", &format!("p{i}"), 1_500), None)
                .await
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => won.push(r.instance),
            Err(e) => assert!(
                e.to_string()
                    .contains("node id 'dup' is already registered by a live process"),
                "{e}"
            ),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let loser = if won[0] == "p0" { "p1" } else { "p0" };
    assert!(stores[1]
        .register_node(common::node("dup", loser, 1_500), None)
        .await
        .is_err());
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let r = stores[1]
        .register_node(common::node("dup", loser, 10_000), None)
        .await
        .unwrap();
    assert_eq!(r.instance, loser);
}
