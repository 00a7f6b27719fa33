//! Shared by the store tests: the conformance suite both stores must pass. (The Redis
//! tests' `redis-server` per test comes from warden-testkit.)

#![allow(dead_code)]

use std::time::Duration;

use warden_store::{
    now_unix_ms, ArchiveRef, ArchiveUpdate, Change, HistoryEvent, NodeRecord, NodeReport, NodeRole,
    NodeState, ServerRecord, ServerState, SessionRecord, StateStore, StoreError, TransitionFilter,
    WakeLease, AGGREGATE_MS,
};

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
    history_feed(store).await;
    session_time_index(store).await;
    retention(store).await;
    nodes(store).await;
    ownership_fence(store).await;
    fleet_identity(store).await;
}

/// One fleet id per store: made by the first to ask, the same for everyone after, even
/// when many ask at once.
async fn fleet_identity(store: &dyn StateStore) {
    let ids = futures_util::future::join_all((0..8).map(|_| warden_store::fleet_id(store))).await;
    let first = ids[0].as_ref().expect("fleet id").clone();
    assert_eq!(first.len(), 32, "{first}");
    for id in ids {
        assert_eq!(id.expect("fleet id"), first);
    }
    assert_eq!(warden_store::fleet_id(store).await.expect("again"), first);
}

/// A node record as an appliance registers it: `instance` names the process.
pub fn node(id: &str, instance: &str, lease_ms: u64) -> NodeRecord {
    NodeRecord {
        id: id.into(),
        address: "10.0.0.7".into(),
        roles: vec![NodeRole::Edge, NodeRole::Node],
        memory_gb: 16.0,
        labels: [("zone".to_string(), "a".to_string())].into(),
        version: "test".into(),
        state: NodeState::Ready,
        since_unix_ms: 0,
        registered_unix_ms: 0,
        lease_until_unix_ms: now_unix_ms() + lease_ms,
        instance: instance.into(),
        host: "box".into(),
        pid: 1,
        allocated_gb: 0.0,
        servers: 0,
        waiting_gb: 0.0,
        link_port: None,
    }
}

/// Nodes register, renew, list and change state; a replaced process is fenced.
async fn nodes(store: &dyn StateStore) {
    assert!(store.nodes().await.unwrap().is_empty());
    assert!(store.node("n1").await.unwrap().is_none());
    let v0 = store.version().await.unwrap();
    let r = store
        .register_node(node("n1", "p1", 10_000), None)
        .await
        .unwrap();
    assert_eq!(r.state, NodeState::Ready);
    assert!(r.registered_unix_ms > 0);
    assert!(
        store.version().await.unwrap() > v0,
        "registration bumps the version"
    );
    store
        .register_node(node("n2", "q1", 10_000), None)
        .await
        .unwrap();
    let ids: Vec<String> = store
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, ["n1", "n2"]);

    // Renewals carry the report and do not bump the version.
    let v1 = store.version().await.unwrap();
    let until = now_unix_ms() + 20_000;
    let report = NodeReport {
        lease_until_unix_ms: until,
        allocated_gb: 6.5,
        servers: 4,
        waiting_gb: 1.0,
    };
    let r = store.renew_node("n1", "p1", report).await.unwrap();
    assert_eq!(
        (r.lease_until_unix_ms, r.allocated_gb, r.servers),
        (until, 6.5, 4)
    );
    assert_eq!(store.node("n1").await.unwrap().unwrap(), r);
    assert_eq!(store.version().await.unwrap(), v1);
    assert!(matches!(
        store.renew_node("n9", "p1", report).await,
        Err(StoreError::NotFound { .. })
    ));

    // State changes are compare-and-set; a cordon survives the process's restart.
    let c = store
        .set_node_state("n1", NodeState::Ready, NodeState::Cordoned)
        .await
        .unwrap();
    assert_eq!(c.state, NodeState::Cordoned);
    assert!(store.version().await.unwrap() > v1);
    let e = store
        .set_node_state("n1", NodeState::Ready, NodeState::Draining)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NodeConflict {
                actual: NodeState::Cordoned,
                ..
            }
        ),
        "{e}"
    );
    let again = store
        .register_node(node("n1", "p2", 10_000), Some("p1"))
        .await
        .unwrap();
    assert_eq!(
        (again.state, again.instance.as_str()),
        (NodeState::Cordoned, "p2")
    );
    // The replaced process may no longer renew.
    let e = store.renew_node("n1", "p1", report).await.unwrap_err();
    assert!(matches!(e, StoreError::NodeFenced { .. }), "{e}");
    store.renew_node("n1", "p2", report).await.unwrap();

    // A dead node is fenced until it registers again (and comes back ready).
    store
        .set_node_state("n2", NodeState::Ready, NodeState::Dead)
        .await
        .unwrap();
    let e = store.renew_node("n2", "q1", report).await.unwrap_err();
    assert!(e.to_string().contains("dead"), "{e}");
    let back = store
        .register_node(node("n2", "q2", 10_000), Some("q1"))
        .await
        .unwrap();
    assert_eq!(back.state, NodeState::Ready);

    // Bad registrations are refused with the reason.
    let mut zero = node("n3", "z", 10_000);
    zero.memory_gb = 0.0;
    let e = store.register_node(zero, None).await.unwrap_err();
    assert!(e.to_string().contains("capacity"), "{e}");
    let e = store
        .register_node(node("bad:id", "z", 1), None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    assert!(store.node("n3").await.unwrap().is_none());
}

/// A change fenced by ownership applies only while the record names that owner.
async fn ownership_fence(store: &dyn StateStore) {
    let mut r = ServerRecord::new("owned", ServerState::Sleeping, "configured");
    r.node = Some("n1".into());
    store.put_new(r).await.unwrap();
    let e = store
        .apply(
            "owned",
            0,
            Change::to(ServerState::Starting, "join").fenced_by("n2"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::NotOwner { owner, by, .. } if owner == "n1" && by == "n2"),
        "{e}"
    );
    assert_eq!(store.get("owned").await.unwrap().unwrap().epoch, 0);
    let r = store
        .apply(
            "owned",
            0,
            Change::to(ServerState::Starting, "join").fenced_by("n1"),
        )
        .await
        .unwrap();
    assert_eq!((r.epoch, r.node.as_deref()), (1, Some("n1")));
    // Moving it elsewhere and starting it there are separate steps: the old owner's next
    // fenced change is refused.
    store
        .apply(
            "owned",
            1,
            Change::to(ServerState::Sleeping, "moved").with_place("n2"),
        )
        .await
        .unwrap();
    let e = store
        .apply(
            "owned",
            2,
            Change::to(ServerState::Starting, "join").fenced_by("n1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotOwner { .. }), "{e}");
}

/// A session of `server` from `start` to `end` (open if None), written through the store.
async fn played(store: &dyn StateStore, id: &str, server: &str, start: u64, end: Option<u64>) {
    let mut s = session(id, server, "edge-1");
    s.start_unix_ms = start;
    store.session_started(s).await.unwrap();
    if let Some(end) = end {
        store.session_ended(id, end).await.unwrap();
    }
}

/// The feed returns what was committed after a cursor, in order, and nothing else.
async fn history_feed(store: &dyn StateStore) {
    let head = store.history_head().await.unwrap();
    let page = store.history_after(head, 100).await.unwrap();
    assert!(page.entries.is_empty(), "{page:?}");
    assert_eq!(page.head, head);

    store
        .put_new(ServerRecord::new("h", ServerState::Sleeping, "configured"))
        .await
        .unwrap();
    let t0 = now_unix_ms();
    played(store, "hs1", "h", t0, Some(t0 + 10)).await;
    store
        .transition("h", 0, ServerState::Starting, "login")
        .await
        .unwrap();

    let page = store.history_after(head, 100).await.unwrap();
    let kinds: Vec<String> = page
        .entries
        .iter()
        .map(|(_, e)| match e {
            HistoryEvent::Transition(t) => format!("{}:{}", t.server, t.to),
            HistoryEvent::Joined(s) => format!("joined:{}", s.id),
            HistoryEvent::Left(s) => format!("left:{}@{:?}", s.id, s.end_unix_ms),
            HistoryEvent::Fleet(f) => format!("fleet:{}", f.kind),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "h:sleeping".to_string(),
            "joined:hs1".to_string(),
            format!("left:hs1@Some({})", t0 + 10),
            "h:starting".to_string(),
        ]
    );
    let positions: Vec<u64> = page.entries.iter().map(|(p, _)| *p).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(positions[0] > head);
    assert_eq!(page.head, positions[3]);
    assert_eq!(store.history_head().await.unwrap(), positions[3]);
    // A cursor reads only what is newer; the limit holds.
    let rest = store.history_after(positions[1], 100).await.unwrap();
    assert_eq!(rest.entries.len(), 2);
    assert_eq!(rest.entries[0].0, positions[2]);
    let one = store.history_after(head, 1).await.unwrap();
    assert_eq!(one.entries.len(), 1);
    assert_eq!(one.entries[0].0, positions[0]);
    assert!(store
        .history_after(positions[3], 100)
        .await
        .unwrap()
        .entries
        .is_empty());
    // Events carry their server and time.
    assert_eq!(rest.entries[0].1.server(), "h");
    assert_eq!(rest.entries[0].1.at_unix_ms(), t0 + 10);

    // A fleet-wide event goes on the feed after them, whole, and moves the version.
    let version = store.version().await.unwrap();
    let event = warden_store::FleetEvent {
        kind: "scaling".into(),
        node: Some("n-1".into()),
        reason: "scale_out: forecast 4.0 GB at q0.9 in 4 s > capacity 2.0 GB".into(),
        at_unix_ms: t0 + 20,
    };
    store.record_fleet_event(event.clone()).await.unwrap();
    let page = store.history_after(positions[3], 100).await.unwrap();
    assert_eq!(page.entries.len(), 1, "{page:?}");
    assert_eq!(page.entries[0].1, HistoryEvent::Fleet(event));
    assert_eq!(page.entries[0].1.server(), "");
    assert_eq!(page.entries[0].1.at_unix_ms(), t0 + 20);
    assert!(store.version().await.unwrap() > version);
}

/// Joins and leaves by time: the newest `limit`, oldest first, per server or fleet-wide.
async fn session_time_index(store: &dyn StateStore) {
    let base = now_unix_ms() - 3_600_000;
    for i in 0..30u64 {
        let start = base + i * 1000;
        let end = (i < 29).then_some(start + 500);
        played(store, &format!("ti{i}"), "ti", start, end).await;
    }
    played(store, "other1", "ti-other", base + 29_900, None).await;

    let events = store.session_events(Some("ti"), 0, 5).await.unwrap();
    let got: Vec<(String, u64)> = events
        .iter()
        .map(|e| {
            let kind = match e {
                HistoryEvent::Joined(s) => format!("j{}", &s.id[2..]),
                HistoryEvent::Left(s) => format!("l{}", &s.id[2..]),
                HistoryEvent::Transition(_) | HistoryEvent::Fleet(_) => "t".into(),
            };
            (kind, e.at_unix_ms() - base)
        })
        .collect();
    let want: Vec<(String, u64)> = [
        ("l27", 27_500),
        ("j28", 28_000),
        ("l28", 28_500),
        ("j29", 29_000),
    ]
    .iter()
    .map(|(k, t)| (k.to_string(), *t))
    .collect();
    assert_eq!(got[1..], want[..], "{got:?}");
    assert_eq!(got[0], ("j27".to_string(), 27_000), "{got:?}");

    // `since` cuts; fleet-wide includes the other server.
    let since = store
        .session_events(Some("ti"), base + 27_200, 100)
        .await
        .unwrap();
    assert_eq!(since.len(), 4, "{since:?}");
    let all = store
        .session_events(None, base + 27_200, 100)
        .await
        .unwrap();
    let mine: Vec<&str> = all
        .iter()
        .map(|e| e.server())
        .filter(|s| s.starts_with("ti"))
        .collect();
    assert_eq!(mine, ["ti", "ti", "ti", "ti", "ti-other"], "{all:?}");
    assert!(store
        .session_events(Some("ti"), base + 60_000, 100)
        .await
        .unwrap()
        .is_empty());

    // Overlapping a window: ended ones clipped by time, the open one included.
    let over = store
        .sessions_overlapping("ti", base + 10_200, base + 12_100)
        .await
        .unwrap();
    let ids: Vec<&str> = over.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["ti10", "ti11", "ti12"], "{ids:?}");
    let over = store
        .sessions_overlapping("ti", base + 28_600, base + 100_000)
        .await
        .unwrap();
    let ids: Vec<&str> = over.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["ti29"], "{ids:?}");
}

/// Old sessions go; their player time stays in usage; open ones and recent ones stay.
async fn retention(store: &dyn StateStore) {
    let now = now_unix_ms();
    // Ten days ago, on an hour boundary: 60 one-minute sessions in one hour, and one
    // that crosses into the next hour (30 s before, 90 s after).
    let old = (now - 10 * 86_400_000) / AGGREGATE_MS * AGGREGATE_MS;
    for i in 0..60u64 {
        let start = old + i * 60_000;
        played(store, &format!("old{i}"), "r", start, Some(start + 60_000)).await;
    }
    let cross = old + AGGREGATE_MS - 30_000;
    played(store, "cross", "r", cross, Some(cross + 120_000)).await;
    // Still open since then, and a recent one.
    played(store, "still", "r", old + 1000, None).await;
    played(store, "recent", "r", now - 60_000, Some(now - 1000)).await;

    let period = (old, old + 2 * AGGREGATE_MS);
    let before = store.usage("r", period.0, period.1, 1.0).await.unwrap();
    let hours_open = 2.0 * 60.0 - 1000.0 / 60_000.0;
    assert!(
        (before.player_minutes - (60.0 + 2.0 + hours_open)).abs() < 1e-6,
        "{before:?}"
    );
    let head_before = store.history_head().await.unwrap();

    // Small batches: the caller goes on while a full batch went.
    let cutoff = now - 86_400_000;
    let mut pruned = 0;
    let mut calls = 0;
    loop {
        let p = store.prune_history(cutoff, 25).await.unwrap();
        pruned += p.sessions;
        calls += 1;
        assert!(calls < 20, "pruning does not converge");
        if !p.more(25) {
            break;
        }
    }
    assert_eq!(pruned, 61, "the 61 old ended sessions");
    assert!(calls >= 3);

    let left: Vec<String> = store
        .sessions(Some("r"), false)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, ["still", "recent"]);
    assert_eq!(store.live_count("r").await.unwrap(), 1);
    // Usage of the pruned period is unchanged: whole hours come from the aggregates.
    let after = store.usage("r", period.0, period.1, 1.0).await.unwrap();
    assert!(
        (after.player_minutes - before.player_minutes).abs() < 1e-6,
        "{before:?} → {after:?}"
    );
    let agg = store
        .player_time_aggregates("r", period.0, period.1)
        .await
        .unwrap();
    assert_eq!(
        agg,
        [(old, 60 * 60_000 + 30_000), (old + AGGREGATE_MS, 90_000)]
    );
    // Half of the first hour: half its aggregated minutes, pro rata.
    let half = store
        .usage("r", old, old + AGGREGATE_MS / 2, 1.0)
        .await
        .unwrap();
    let want = 60.5 / 2.0 + 30.0 - 1000.0 / 60_000.0;
    assert!((half.player_minutes - want).abs() < 1e-6, "{half:?}");

    // The pruned sessions left the time index; the feed (pruned by when entries were
    // recorded, which is now for all of them) stays.
    let events = store.session_events(Some("r"), 0, 1000).await.unwrap();
    let ids: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::Joined(s) | HistoryEvent::Left(s) => Some(s.id.as_str()),
            HistoryEvent::Transition(_) | HistoryEvent::Fleet(_) => None,
        })
        .collect();
    assert_eq!(ids, ["still", "recent", "recent"], "{events:?}");
    let feed = store.history_after(0, 100_000).await.unwrap();
    assert!(feed
        .entries
        .iter()
        .any(|(_, e)| matches!(e, HistoryEvent::Left(s) if s.id == "old0")));
    assert_eq!(store.history_head().await.unwrap(), head_before);

    // Pruning again finds nothing and counts nothing twice.
    let again = store.prune_history(cutoff, 25).await.unwrap();
    assert_eq!((again.sessions, again.feed_entries), (0, 0));
    let twice = store.usage("r", period.0, period.1, 1.0).await.unwrap();
    assert!((twice.player_minutes - before.player_minutes).abs() < 1e-6);

    // A cutoff past everything recorded empties the feed (the position goes on) and
    // leaves only open sessions.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let all = now_unix_ms();
    while store.prune_history(all, 10_000).await.unwrap().more(10_000) {}
    assert!(store
        .history_after(0, 100_000)
        .await
        .unwrap()
        .entries
        .is_empty());
    assert_eq!(store.history_head().await.unwrap(), head_before);
    let kept = store.sessions(None, false).await.unwrap();
    assert!(kept.iter().any(|s| s.id == "still"));
    assert!(
        kept.iter()
            .all(|s| s.end_unix_ms.is_none_or(|end| end >= all)),
        "{kept:?}"
    );
    played(store, "after", "r", now_unix_ms(), None).await;
    let next = store.history_after(head_before, 10).await.unwrap();
    assert_eq!(next.entries.len(), 1);
    assert!(next.entries[0].0 > head_before);
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

/// A one-minute session as a store written before the time index holds it.
pub fn legacy_session() -> SessionRecord {
    SessionRecord {
        id: "legacy".into(),
        start_unix_ms: AGGREGATE_MS,
        end_unix_ms: Some(AGGREGATE_MS + 60_000),
        ..SessionRecord::start("old", "Alex", "edge-1")
    }
}

/// After a store with [`legacy_session`] and no index opened (and ran its retention), the
/// session is in the time index, the retention removes it and usage keeps its minute.
pub async fn legacy_sessions_are_indexed(store: &dyn StateStore) {
    let p = store.prune_history(1, 100).await.unwrap();
    assert_eq!(p.sessions, 0, "nothing ended before 1 ms");
    let events = store.session_events(Some("old"), 0, 10).await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let p = store.prune_history(now_unix_ms(), 100).await.unwrap();
    assert_eq!(p.sessions, 1);
    assert!(store.sessions(None, false).await.unwrap().is_empty());
    let usage = store.usage("old", 0, 2 * AGGREGATE_MS, 1.0).await.unwrap();
    assert!((usage.player_minutes - 1.0).abs() < 1e-9, "{usage:?}");
}
