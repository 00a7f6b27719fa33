//! Servers sleep and wake, with the local-process runtime: the "game server" is the npm
//! `minecraft-protocol` backend started by Warden itself; players are real nmp clients.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use warden_tests::*;

fn managed(id: &str, port: u16, dir: &Path, sleep_after: &str, archive_after: &str) -> String {
    let backend = peers_dir().join("backend.js");
    format!(
        "{}sleep_after = \"{sleep_after}\"\narchive_after = \"{archive_after}\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\n\
         runtime = {{ kind = \"process\", command = [\"node\", \"{}\", \"--version\", \"1.20.4\", \"--port\", \"{port}\"], dir = \"{}\" }}\n",
        server(id, &format!("{id}.test"), &format!("127.0.0.1:{port}")),
        backend.display(),
        dir.display()
    )
}

fn up(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

fn wait(what: &str, within: Duration, ok: impl FnMut() -> bool) {
    wait_for(what, within, String::new, ok)
}

#[test]
fn join_wakes_once_and_idle_puts_the_server_back_to_sleep() {
    let dir = tempdir("wake");
    let port = free_port();
    let rest = stores_in(&dir) + &managed("survival", port, &dir.join("data"), "3s", "48h");
    let _server = ServerProcess(dir.join("data"));
    let warden = Warden::start("wake", &config("", None, &rest));
    let addr = format!("127.0.0.1:{}", warden.port);

    // Asleep: status pings are answered by Warden and never start the server.
    for _ in 0..3 {
        let m = motd(&addr, "survival.test");
        assert!(m.contains("Sleeping"), "{m:?}");
    }
    assert!(!up(port), "a status ping started the server");

    // Twenty players join at once: one start, everyone held until ready, everyone plays.
    let p = warden.port.to_string();
    let (ok, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.20.4",
        "--server-host",
        "survival.test",
        "--count",
        "20",
        "--chat",
        "hi",
        "--timeout-ms",
        "45000",
    ]);
    assert!(ok, "{lines:#?}\n{}", warden.log());
    assert_eq!(lines.iter().filter(|l| l["ok"] == true).count(), 20);
    assert_eq!(
        warden.log().matches("server process started").count(),
        1,
        "{}",
        warden.log()
    );

    // Nobody left: after sleep_after the server is stopped and shows as sleeping again.
    wait("the idle server to stop", Duration::from_secs(40), || {
        !up(port) && warden.log().contains("stopped after idle")
    });
    let m = motd(&addr, "survival.test");
    assert!(m.contains("Sleeping"), "{m:?}");

    // And the next join wakes it again.
    let (ok, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.20.4",
        "--server-host",
        "survival.test",
        "--timeout-ms",
        "30000",
    ]);
    assert!(ok, "{lines:?}");
    assert_eq!(warden.log().matches("server process started").count(), 2);
}

#[test]
fn a_playing_player_is_never_cut_by_the_idle_timer() {
    let dir = tempdir("busy");
    let port = free_port();
    let rest = stores_in(&dir) + &managed("busy", port, &dir.join("data"), "2s", "48h");
    let _server = ServerProcess(dir.join("data"));
    let warden = Warden::start("busy", &config("", None, &rest));
    let p = warden.port.to_string();
    // One player stays 10 s, five times sleep_after: the server must stay up for them.
    let (ok, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.20.4",
        "--server-host",
        "busy.test",
        "--hold-ms",
        "10000",
        "--timeout-ms",
        "30000",
    ]);
    // player.js fails in its hold phase if the connection breaks while it stays.
    assert!(ok, "player was cut off: {lines:?}\n{}", warden.log());
    assert_eq!(warden.log().matches("server process started").count(), 1);
}

#[test]
fn archived_server_is_restored_byte_identical_on_join() {
    let dir = tempdir("archive");
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("world/region")).expect("mkdir");
    let mut files = BTreeMap::new();
    for (i, name) in [
        "world/level.dat",
        "world/region/r.0.0.mca",
        "server.properties",
        "ops.json",
    ]
    .iter()
    .enumerate()
    {
        let bytes: Vec<u8> = (0..(200_000 * (i + 1)))
            .map(|x| ((x * 31 + i * 7) % 251) as u8)
            .collect();
        std::fs::write(data.join(name), &bytes).expect("write");
        files.insert(name.to_string(), bytes);
    }
    let port = free_port();
    let rest = stores_in(&dir) + &managed("old", port, &data, "2s", "1s");
    let _server = ServerProcess(data.clone());
    let warden = Warden::start("archive", &config("", None, &rest));

    // Asleep from the start, so after archive_after it is archived and the node copy goes.
    wait("the server to be archived", Duration::from_secs(60), || {
        !data.exists() && warden.log().contains("archived and verified")
    });
    assert!(dir.join("archive/old/manifest.json").exists());
    let m = motd(&format!("127.0.0.1:{}", warden.port), "old.test");
    assert!(m.contains("Archived"), "{m:?}");

    // A join restores it (verified against the manifest), starts it, and the player plays.
    let p = warden.port.to_string();
    let (ok, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.20.4",
        "--server-host",
        "old.test",
        "--chat",
        "back",
        "--timeout-ms",
        "40000",
    ]);
    assert!(ok, "{lines:?}\n{}", warden.log());
    for (name, bytes) in &files {
        let got = std::fs::read(data.join(name)).unwrap_or_default();
        assert!(got == *bytes, "{name} differs after restore");
    }
}

/// Two appliances on one Redis: twenty players join through both at once, the server is
/// started exactly once (the store's wake lock), and every player plays.
#[test]
fn two_appliances_on_one_redis_start_a_server_exactly_once() {
    let redis = Redis::start();
    let dir = tempdir("redis-wake");
    let port = free_port();
    let _server = ServerProcess(dir.join("data"));
    let shared = |name: &str| {
        format!(
            "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n[archive]\npath = \"{}/archive\"\n[lifecycle]\nappliance = \"{name}\"\n{}",
            redis.port,
            dir.display(),
            managed("shared", port, &dir.join("data"), "48h", "48h")
        )
    };
    let a = Warden::start("redis-a", &config("", None, &shared("edge-a")));
    let b = Warden::start("redis-b", &config("", None, &shared("edge-b")));
    let args = |w: &Warden, name: &str| {
        vec![
            "--port".to_string(),
            w.port.to_string(),
            "--version".into(),
            "1.20.4".into(),
            "--server-host".into(),
            "shared.test".into(),
            "--count".into(),
            "10".into(),
            "--username".into(),
            name.into(),
            "--timeout-ms".into(),
            "45000".into(),
        ]
    };
    let (args_a, args_b) = (args(&a, "A"), args(&b, "B"));
    let pa = player_spawn(&args_a.iter().map(String::as_str).collect::<Vec<_>>());
    let pb = player_spawn(&args_b.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok_a, lines_a) = player_wait(pa);
    let (ok_b, lines_b) = player_wait(pb);
    assert!(
        ok_a && ok_b,
        "{lines_a:#?}\n{lines_b:#?}\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    let starts = a.log().matches("server process started").count()
        + b.log().matches("server process started").count();
    assert_eq!(starts, 1, "A:\n{}\nB:\n{}", a.log(), b.log());
}

/// kill -9 during archive and during restore: nothing is lost and the server still wakes.
#[test]
fn kill_dash_9_mid_archive_and_mid_restore_loses_nothing() {
    let dir = tempdir("crash");
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("world/region")).expect("mkdir");
    // Incompressible data, big enough that archiving and restoring take a moment.
    let mut files = BTreeMap::new();
    for i in 0..6 {
        let bytes = incompressible(24 << 20, 0x9E37_79B9_7F4A_7C15 ^ i as u64);
        let name = format!("world/region/r.{i}.0.mca");
        std::fs::write(data.join(&name), &bytes).expect("write");
        files.insert(name, bytes);
    }
    let port = free_port();
    let rest = stores_in(&dir) + &managed("crashy", port, &data, "2s", "1s");
    let _server = ServerProcess(data.clone());
    let mut warden = Warden::start("crash", &config("", None, &rest));

    // Kill Warden while it archives.
    wait("archiving to start", Duration::from_secs(60), || {
        warden.log().contains("state=\"archiving\"")
    });
    warden.crash_and_restart("after-archive-crash.log");
    let all_present = || files.keys().all(|f| data.join(f).exists());
    let log = warden.log_named("after-archive-crash.log");
    // Either the archive had not finished (node copy kept) or it had (verified, then removed).
    assert!(
        all_present() || log.contains("archive had completed"),
        "data lost:\n{log}"
    );

    // It archives again (or already had), then a join restores it; kill Warden mid-restore.
    wait("the server to be archived", Duration::from_secs(90), || {
        !data.exists()
    });
    let p = warden.port.to_string();
    let join = player_spawn(&[
        "--port",
        &p,
        "--version",
        "1.20.4",
        "--server-host",
        "crashy.test",
        "--timeout-ms",
        "40000",
    ]);
    wait("restore to start", Duration::from_secs(60), || {
        warden
            .log_named("after-archive-crash.log")
            .contains("state=\"restoring\"")
    });
    warden.crash_and_restart("after-restore-crash.log");
    let _ = player_wait(join); // that player's connection died with the process
    let log = warden.log_named("after-restore-crash.log");
    assert!(
        log.contains("restore interrupted; archive intact")
            || log.contains("restore had completed"),
        "{log}"
    );

    // The server still wakes, and every byte is back.
    let (ok, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.20.4",
        "--server-host",
        "crashy.test",
        "--chat",
        "alive",
        "--timeout-ms",
        "45000",
    ]);
    assert!(
        ok,
        "{lines:?}\n{}",
        warden.log_named("after-restore-crash.log")
    );
    for (name, bytes) in &files {
        assert!(
            std::fs::read(data.join(name)).unwrap_or_default() == *bytes,
            "{name} differs"
        );
    }
}

/// Redis goes away: routing to running servers continues, a wake is refused with a clear
/// message instead of risking a double start, and everything works again when it returns.
#[test]
fn redis_outage_refuses_wakes_clearly_and_recovers() {
    let redis = Redis::start();
    let redis_port = redis.port;
    let dir = tempdir("redis-outage");
    let port = free_port();
    let _server = ServerProcess(dir.join("data"));
    let always_on = Backend::start("1.20.4", &[]);
    let rest = format!(
        "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}\"\n[archive]\npath = \"{}/archive\"\n{}{}",
        dir.display(),
        managed("napper", port, &dir.join("data"), "48h", "48h"),
        server("static", "static.test", &format!("127.0.0.1:{}", always_on.port("1.20.4")))
    );
    let warden = Warden::start("redis-outage", &config("", None, &rest));
    let p = warden.port.to_string();
    drop(redis);

    let (ok, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.20.4",
        "--server-host",
        "napper.test",
        "--timeout-ms",
        "30000",
    ]);
    assert!(!ok);
    let kick = lines[0]["kick"].as_str().unwrap_or_default().to_string();
    assert!(
        kick.contains("state store is unreachable"),
        "{lines:?}\n{}",
        warden.log()
    );
    assert!(!up(port), "started without the wake lock");
    let (ok, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.20.4",
        "--server-host",
        "static.test",
        "--timeout-ms",
        "15000",
    ]);
    assert!(ok, "routing must continue during the outage: {lines:?}");

    // When Redis is back the store reconnects on its own; a player who rejoins gets in
    // (the first attempt may still meet the reconnect).
    let _redis = Redis::start_on(redis_port);
    let mut last = Vec::new();
    let joined = (0..5).any(|_| {
        let (ok, lines) = player(&[
            "--port",
            &p,
            "--version",
            "1.20.4",
            "--server-host",
            "napper.test",
            "--chat",
            "back",
            "--timeout-ms",
            "40000",
        ]);
        last = lines;
        if !ok {
            std::thread::sleep(Duration::from_secs(1));
        }
        ok
    });
    assert!(joined, "{last:?}\n{}", warden.log());
}

/// A server that dies on its own (kill -9 of the game server, not of Warden) is noticed:
/// it shows as asleep again and the next join starts it, instead of being sent to a dead
/// port.
#[test]
fn a_crashed_server_is_noticed_and_the_next_join_wakes_it() {
    let dir = tempdir("crashed-server");
    let port = free_port();
    let data = dir.join("data");
    let rest = stores_in(&dir) + &managed("fragile", port, &data, "1h", "48h");
    let _server = ServerProcess(data.clone());
    let warden = Warden::start("crashed-server", &config("", None, &rest));
    let p = warden.port.to_string();
    let join = || {
        player(&[
            "--port",
            &p,
            "--version",
            "1.20.4",
            "--server-host",
            "fragile.test",
            "--timeout-ms",
            "40000",
        ])
    };
    let (ok, lines) = join();
    assert!(ok, "{lines:?}\n{}", warden.log());
    let pid: i32 = std::fs::read_to_string(data.join(".warden-server.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    // SAFETY: kill(2) on the game server's process group, which this test's Warden started.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    wait("the crash to be noticed", Duration::from_secs(20), || {
        warden.log().contains("stopped outside Warden")
    });
    let (ok, lines) = join();
    assert!(ok, "{lines:?}\n{}", warden.log());
    assert_eq!(warden.log().matches("server process started").count(), 2);
}

/// A join that arrives while the idle server is being stopped must wake it once the stop is
/// over: the player waits in the anteroom and gets in, rather than waiting for ever because
/// the sleep held the busy lock when the join asked for a wake.
#[test]
fn a_join_during_the_idle_stop_wakes_the_server_afterwards() {
    let dir = tempdir("join-stop");
    let port = free_port();
    let data = dir.join("data");
    let backend = peers_dir().join("backend.js");
    // The server's shell ignores SIGTERM and lingers after the game server (node resets
    // its own signals and exits), so each stop takes the whole stop_timeout: a wide window
    // to join in while it is `stopping`.
    let rest = format!(
        "{}{}sleep_after = \"2s\"\nstop_timeout = \"4s\"\nstart_timeout = \"60s\"\n\
         runtime = {{ kind = \"process\", command = [\"sh\", \"-c\", \"trap '' TERM; node {} --version 1.21.4 --port {port}; sleep 30\"], dir = \"{}\" }}\n\
         [anteroom]\nmax_wait = \"90s\"\n",
        stores_in(&dir),
        server("late", "late.test", &format!("127.0.0.1:{port}")),
        backend.display(),
        data.display()
    );
    let _server = ServerProcess(data.clone());
    let warden = Warden::start("join-stop", &config("", None, &rest));
    let p = warden.port.to_string();
    let join = |name: &str| {
        player(&[
            "--port",
            &p,
            "--version",
            "1.21.4",
            "--server-host",
            "late.test",
            "--username",
            name,
            "--timeout-ms",
            "40000",
        ])
    };
    let (ok, lines) = join("First");
    assert!(ok, "{lines:?}\n{}", warden.log());

    // Idle for 2 s: the stop begins and takes ~4 s. Join in the middle of it.
    wait("the idle stop to begin", Duration::from_secs(30), || {
        warden
            .log()
            .lines()
            .any(|l| l.contains("transition") && l.contains("stopping"))
    });
    let (ok, lines) = join("Late");
    assert!(
        ok,
        "the player who joined during the stop never got in: {lines:?}\n{}",
        warden.log()
    );
    assert_eq!(lines[0]["transfers"], 1, "{lines:?}");
    assert!(
        warden.log().contains("stopped after idle"),
        "{}",
        warden.log()
    );
    assert_eq!(
        warden.log().matches("server process started").count(),
        2,
        "{}",
        warden.log()
    );
}
