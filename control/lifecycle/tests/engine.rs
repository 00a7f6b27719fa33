//! The engine in-process, on the real embedded store, the real process runtime and a real
//! local archive directory: operators' commands against the state table, an archive and
//! restore that bring the world back byte for byte, and a wake that fails cleanly. No
//! `warden` binary, no network peers: these run in seconds and pin the engine's own
//! contract (states, messages, error kinds) below the API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use warden_archive::{ArchiveStore, LocalDir};
use warden_lifecycle::{
    Command, Engine, LifecycleError, LifecycleSettings, ManagedServer, ServerData,
};
use warden_proxy::sessions::Sessions;
use warden_runtime::{ProcessRuntime, Runtime};
use warden_store::{EmbeddedStore, ServerState, StateStore};

struct Rig {
    _dir: tempfile::TempDir,
    world: std::path::PathBuf,
    engine: Arc<Engine>,
}

/// One process server `world` whose command never answers a status ping.
async fn rig(start_timeout: Duration) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world");
    std::fs::create_dir_all(world.join("region")).unwrap();
    std::fs::write(world.join("level.dat"), b"level").unwrap();
    let region: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(world.join("region/r.0.0.mca"), &region).unwrap();
    let store: Arc<dyn StateStore> =
        Arc::new(EmbeddedStore::open(dir.path().join("store")).await.unwrap());
    let archive: Arc<dyn ArchiveStore> =
        Arc::new(LocalDir::new(dir.path().join("archive")).unwrap());
    let server = ManagedServer {
        id: "world".into(),
        // Nothing listens on port 1 of loopback: the server never becomes ready.
        backend: "127.0.0.1:1".into(),
        proxy_protocol: false,
        runtime: Arc::new(ProcessRuntime::new(
            vec!["sleep".into(), "30".into()],
            world.clone(),
        )),
        data: Some(ServerData::Dir(world.clone())),
        sleep_after: Duration::from_secs(600),
        archive_after: Duration::from_secs(48 * 3600),
        start_timeout,
        stop_timeout: Duration::from_secs(5),
        memory_gb: 1.0,
        rcon: None,
        archive: Some(archive),
        node_backends: BTreeMap::new(),
        anywhere: false,
        node_labels: BTreeMap::new(),
    };
    let engine = Engine::start(
        vec![server],
        store,
        Sessions::new(None),
        LifecycleSettings::default(),
    )
    .await
    .unwrap();
    Rig {
        _dir: dir,
        world,
        engine,
    }
}

fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn state(engine: &Engine) -> ServerState {
    engine.view("world").unwrap().state
}

#[tokio::test]
async fn commands_follow_the_state_table_and_say_why_not() {
    let r = rig(Duration::from_secs(5)).await;
    assert_eq!(state(&r.engine), ServerState::Sleeping);

    let refused = |e: LifecycleError| {
        assert!(e.is_conflict(), "{e:?} should be a conflict");
        assert!(!e.is_unavailable());
        e.to_string()
    };
    let e = r
        .engine
        .prepare("world", Command::Sleep { force: false })
        .await;
    assert_eq!(
        refused(e.err().unwrap()),
        "cannot sleep world while it is sleeping"
    );
    let e = r.engine.prepare("world", Command::Restore).await;
    assert_eq!(
        refused(e.err().unwrap()),
        "cannot restore world while it is sleeping (only an archived server can be restored)"
    );
    let e = r
        .engine
        .prepare("world", Command::Restart { image: None })
        .await;
    assert_eq!(
        refused(e.err().unwrap()),
        "cannot restart world while it is sleeping (only a running server can be restarted)"
    );
    let e = r.engine.prepare("nope", Command::Wake).await;
    assert!(matches!(e, Err(LifecycleError::NotFound(ref id)) if id == "nope"));
    let e = r
        .engine
        .prepare(
            "world",
            Command::Migrate {
                to: "warden".into(),
            },
        )
        .await;
    assert_eq!(refused(e.err().unwrap()), "world is on warden already");
    // Nothing refused changed the server.
    assert_eq!(state(&r.engine), ServerState::Sleeping);
}

#[tokio::test]
async fn archive_then_restore_brings_the_world_back_byte_for_byte() {
    let r = rig(Duration::from_secs(5)).await;
    let before = files(&r.world);

    let run = r.engine.prepare("world", Command::Archive).await.unwrap();
    // While it runs, the busy lock refuses a second command.
    let again = r.engine.prepare("world", Command::Archive).await;
    assert!(again.is_err());
    assert_eq!(run.await.unwrap(), "archived and verified");
    assert_eq!(state(&r.engine), ServerState::Archived);
    assert!(
        !r.world.exists(),
        "the node copy goes once the archive is verified"
    );
    assert!(r.engine.view("world").unwrap().archive_bytes.unwrap_or(0) > 0);

    let e = r.engine.prepare("world", Command::Archive).await;
    assert!(e.err().unwrap().is_conflict());

    let run = r.engine.prepare("world", Command::Restore).await.unwrap();
    assert_eq!(run.await.unwrap(), "restored; asleep until the next join");
    assert_eq!(state(&r.engine), ServerState::Sleeping);
    assert_eq!(files(&r.world), before);
}

#[tokio::test]
async fn a_wake_that_never_gets_ready_fails_with_its_reason() {
    let r = rig(Duration::from_secs(2)).await;
    let run = r.engine.prepare("world", Command::Wake).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the wake ends within its start timeout")
        .unwrap_err();
    assert!(!e.is_unavailable() && !e.is_conflict(), "{e:?}");
    assert!(e.to_string().contains("not ready within 2 s"), "{e}");
    assert_eq!(state(&r.engine), ServerState::Failed);
    // The runtime stopped what it started: a failed wake leaves no process behind.
    let runtime = ProcessRuntime::new(vec!["sleep".into()], r.world.clone());
    assert!(
        !runtime.running().await.unwrap(),
        "the server still runs after a failed wake"
    );
}
