//! The embedded store against the shared conformance suite, plus what only
//! it promises: durability across reopen and one owner per data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use std::time::Duration;

use warden_store::{
    open, EmbeddedStore, ServerRecord, ServerState, SessionRecord, StoreConfig, StoreError,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    common::conformance(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::Embedded {
        path: dir.path().join("nested/data"),
    };
    let (version, epoch) = {
        let store = open(&config).await.unwrap();
        store
            .put_new(ServerRecord::new(
                "survival",
                ServerState::Sleeping,
                "configured",
            ))
            .await
            .unwrap();
        store
            .transition("survival", 0, ServerState::Starting, "login")
            .await
            .unwrap();
        store
            .session_started(SessionRecord::start("survival", "Alex", "edge-1"))
            .await
            .unwrap();
        let lease = store
            .acquire_wake("survival", "edge-1", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        (store.version().await.unwrap(), lease.fencing_epoch)
    };
    let store = open(&config).await.unwrap();
    let r = store.get("survival").await.unwrap().unwrap();
    assert_eq!((r.state, r.epoch), (ServerState::Starting, 1));
    assert_eq!(
        store.transitions(&Default::default()).await.unwrap().len(),
        2
    );
    assert_eq!(store.live_count("survival").await.unwrap(), 1);
    assert_eq!(store.version().await.unwrap(), version);
    assert_eq!(*store.watch().borrow(), version);
    // Leases die with the process; fencing epochs keep rising.
    let lease = store
        .acquire_wake("survival", "edge-1", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("leases do not survive a restart");
    assert!(lease.fencing_epoch > epoch);
}

#[tokio::test]
async fn embedded_refuses_a_second_owner() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedStore::open(dir.path()).await.unwrap();
    let err = EmbeddedStore::open(dir.path())
        .await
        .err()
        .expect("second open must fail");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("already open"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_indexes_the_sessions_of_an_older_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The tables an earlier version wrote: sessions, but no time index.
        let db = redb::Database::create(dir.path().join("state.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def = redb::TableDefinition::<&str, &str>::new("sessions");
            let mut t = txn.open_table(def).unwrap();
            let s = common::legacy_session();
            let json = serde_json::to_string(&s).unwrap();
            t.insert(s.id.as_str(), json.as_str()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    common::legacy_sessions_are_indexed(&store).await;
}
