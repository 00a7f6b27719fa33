//! Graceful binary upgrade on pingora: a new process takes over the listening socket,
//! players already connected stay on the old process until they leave, new players are
//! served by the new one, and the old process exits once its last session has ended.

use std::time::{Duration, Instant};

use warden_tests::*;

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn upgrade_keeps_live_sessions_and_new_process_takes_new_ones() {
    let backend = Backend::start("1.21.4", &[]);
    let b = format!("127.0.0.1:{}", backend.port("1.21.4"));
    let mut old = Warden::start(
        "upgrade",
        &config("grace_period = \"120s\"", None, &server("s", "s.test", &b)),
    );
    let p = old.port.to_string();

    let held = player_spawn(&[
        "--port",
        &p,
        "--version",
        "1.21.4",
        "--server-host",
        "s.test",
        "--username",
        "Old",
        "--count",
        "5",
        "--hold-ms",
        "14000",
    ]);
    wait_for("5 live sessions", Duration::from_secs(30), || {
        old.metric("warden_sessions_active") >= 5.0
    });

    let mut new = Warden::spawn(&old.dir, &old.config, true, "new.log");
    std::thread::sleep(Duration::from_millis(1500));
    old.signal(libc::SIGQUIT);
    // The old process stops accepting a few seconds after handing over the sockets.
    wait_for(
        "old process to stop accepting",
        Duration::from_secs(20),
        || old.log().contains("Graceful shutdown started"),
    );

    let (ok, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.21.4",
        "--server-host",
        "s.test",
        "--username",
        "Newcomer",
        "--chat",
        "new",
    ]);
    assert!(ok, "new player after upgrade: {lines:?}");
    let new_log = std::fs::read_to_string(old.dir.join("new.log")).unwrap_or_default();
    assert!(
        new_log.contains("player=Newcomer"),
        "the new process did not serve the new player:\n{new_log}"
    );
    assert!(!old.log().contains("player=Newcomer"));

    let (ok, lines) = player_wait(held);
    assert!(ok, "a session on the old process was dropped: {lines:?}");
    assert_eq!(lines.iter().filter(|l| l["ok"] == true).count(), 5);

    // With its last session gone, the old process exits without waiting out the grace period.
    let started = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = old.child.try_wait() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "old process still running or failed: {status:?}\n{}",
        old.log()
    );
    assert!(old.log().contains("all sessions ended"));
    assert!(
        wait_listening(old.addr(), Duration::from_secs(2)),
        "new process still listening"
    );
    let _ = new.kill();
    let _ = new.wait();
}
