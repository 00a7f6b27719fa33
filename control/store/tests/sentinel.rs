//! The Redis store through Sentinel, on a real primary, two replicas and three sentinels:
//! a write no replica acknowledged is not reported as done; the primary killed -9 turns
//! calls into prompt `Unavailable` answers (never a hang); the store then finds the
//! promoted replica by itself, with every acknowledged wake lock and fencing epoch still
//! there, and its watcher follows it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::time::{Duration, Instant};

use common::wait_for_version;
use warden_store::{
    RedisConfig, RedisStore, ServerRecord, ServerState, Servers, StateStore, WakeLock,
};
use warden_testkit::{SentinelSet, MASTER_NAME};

const OP_TIMEOUT: Duration = Duration::from_secs(2);

fn open(set: &SentinelSet) -> RedisStore {
    RedisStore::open(RedisConfig {
        op_timeout: OP_TIMEOUT,
        ..RedisConfig::sentinel("redis://127.0.0.1/", set.sentinel_addrs(), MASTER_NAME)
    })
    .unwrap()
}

/// A wake lock no replica has is not handed out: with every replica frozen the acquire
/// fails as `Unavailable` (in bounded time) and leaves no lock behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_no_replica_acknowledged_is_not_reported_done() {
    let set = tokio::task::spawn_blocking(SentinelSet::start)
        .await
        .unwrap();
    let store = open(&set);
    store.health().await.unwrap();

    set.signal_replicas("STOP");
    let t = Instant::now();
    let e = store
        .acquire_wake("s", "edge-1", Duration::from_secs(60))
        .await
        .unwrap_err();
    let took = t.elapsed();
    set.signal_replicas("CONT");
    assert!(e.is_unavailable(), "{e}");
    assert!(e.to_string().contains("replica"), "{e}");
    assert!(took < 2 * OP_TIMEOUT + Duration::from_secs(1), "{took:?}");

    // The unacknowledged lock was given back (now acknowledged): another appliance gets it.
    let mut lease = None;
    for _ in 0..50 {
        match store
            .acquire_wake("s", "edge-2", Duration::from_secs(60))
            .await
        {
            Ok(l) => {
                lease = l;
                break;
            }
            Err(e) => assert!(e.is_unavailable(), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        lease.is_some(),
        "the unacknowledged acquire left its lock behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_follows_a_failover_and_keeps_what_it_acknowledged() {
    let mut set = tokio::task::spawn_blocking(SentinelSet::start)
        .await
        .unwrap();
    let store = open(&set);
    let watcher = open(&set);
    let mut changes = watcher.watch();

    let rec = store
        .put_new(ServerRecord::new("s", ServerState::Sleeping, ""))
        .await
        .unwrap();
    let lease = store
        .acquire_wake("s", "edge-1", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("free");
    let rec = store
        .transition("s", rec.epoch, ServerState::Starting, "player joined")
        .await
        .unwrap();

    // kill -9 right after the acknowledged writes.
    set.kill_primary();
    let killed = Instant::now();
    let mut outage_calls = 0;
    let back = loop {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the store never came back"
        );
        let t = Instant::now();
        let r = store.get("s").await;
        assert!(
            t.elapsed() < OP_TIMEOUT + Duration::from_millis(500),
            "a call took {:?}",
            t.elapsed()
        );
        match r {
            Ok(Some(after)) => break after,
            Ok(None) => panic!("the record was lost in the failover"),
            Err(e) => {
                assert!(e.is_unavailable(), "{e}");
                outage_calls += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reads_back = killed.elapsed();
    assert!(outage_calls > 0, "the kill was not noticed");
    let promoted = tokio::task::block_in_place(|| set.wait_failover(Duration::from_secs(5)));

    // What was acknowledged survived: the record, its epoch, the wake lock and its epoch.
    assert_eq!((back.state, back.epoch), (ServerState::Starting, rec.epoch));
    assert!(store
        .acquire_wake("s", "edge-2", Duration::from_secs(60))
        .await
        .unwrap()
        .is_none());

    // Writes go to the new primary (once a replica acknowledges them).
    let t = Instant::now();
    let mut released = store.release_wake(&lease).await;
    while released.as_ref().is_err_and(|e| e.is_unavailable())
        && t.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        released = store.release_wake(&lease).await;
    }
    assert!(released.unwrap(), "the lease was lost");
    let writes_back = killed.elapsed();
    let next = store
        .acquire_wake("s", "edge-2", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("free");
    assert!(
        next.fencing_epoch > lease.fencing_epoch,
        "{} after {}",
        next.fencing_epoch,
        lease.fencing_epoch
    );
    let active = store
        .transition("s", rec.epoch, ServerState::Active, "ready")
        .await
        .unwrap();
    assert_eq!(active.epoch, rec.epoch + 1);

    // The watcher follows the new primary too.
    wait_for_version(
        &mut changes,
        store.version().await.unwrap(),
        Duration::from_secs(10),
    )
    .await;
    eprintln!(
        "figures: primary killed; reads answered again after {reads_back:?}, \
         writes after {writes_back:?} (new primary on port {promoted})"
    );
}
