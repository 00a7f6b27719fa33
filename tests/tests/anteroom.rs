//! The anteroom through the real binary: 1.20.5+ players joining a sleeping server are
//! logged in by Warden, wait in the configuration phase, and are transferred back once the
//! server is up; they return with handshake intent 3 and their ticket and reach the
//! backend. Players are npm `minecraft-protocol` clients following the Transfer the way a
//! vanilla client does (`player.js`: reconnect with intent 3, answer the Cookie Request).

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use warden_tests::*;

/// Every nmp version that knows Transfer (protocol ≥ 766, 1.20.5+).
fn transfer_versions() -> Vec<String> {
    let out = Command::new("node")
        .current_dir(peers_dir())
        .args([
            "-e",
            "const mc=require('minecraft-protocol'),md=require('minecraft-data');\
             console.log(JSON.stringify(mc.supportedVersions.filter(v=>{const d=md(v);return d&&d.version.version>=766})))",
        ])
        .output()
        .expect("node");
    serde_json::from_slice(&out.stdout).expect("versions JSON")
}

/// A sleeping process-runtime server running the nmp backend for `version`.
fn sleeper(id: &str, version: &str, port: u16, dir: &Path) -> String {
    let backend = peers_dir().join("backend.js");
    format!(
        "{}sleep_after = \"1h\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\n\
         runtime = {{ kind = \"process\", command = [\"node\", \"{}\", \"--version\", \"{version}\", \"--port\", \"{port}\"], dir = \"{}\" }}\n",
        server(id, &format!("{id}.ante.test"), &format!("127.0.0.1:{port}")),
        backend.display(),
        dir.join(id).display()
    )
}

fn last_result(lines: &[Value]) -> &Value {
    lines.last().expect("player printed a result")
}

#[test]
fn every_transfer_capable_version_waits_in_the_anteroom_then_plays() {
    let versions = transfer_versions();
    assert!(versions.len() >= 9, "{versions:?}");
    let dir = tempdir("anteroom");
    let mut rest = stores_in(&dir);
    let mut guards = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let id = format!("v{i}");
        std::fs::create_dir_all(dir.join(&id)).expect("mkdir");
        rest += &sleeper(&id, v, free_port(), &dir);
        guards.push(ServerProcess(dir.join(&id)));
    }
    let warden = Warden::start("anteroom", &config("", None, &rest));
    let p = warden.port.to_string();
    let players: Vec<_> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            player_spawn(&[
                "--port",
                &p,
                "--version",
                v,
                "--server-host",
                &format!("v{i}.ante.test"),
                "--chat",
                "through the anteroom",
                "--timeout-ms",
                "90000",
            ])
        })
        .collect();
    for (v, child) in versions.iter().zip(players) {
        let (ok, lines) = player_wait(child);
        assert!(ok, "{v}: {lines:?}\n{}", warden.log());
        // One transfer: in the anteroom, then straight to the backend (never back).
        assert_eq!(last_result(&lines)["transfers"], 1, "{v}: {lines:?}");
    }
    let log = warden.log();
    assert_eq!(
        log.matches("anteroom: transferred to the ready server")
            .count(),
        versions.len(),
        "{log}"
    );
}

#[test]
fn forged_tickets_are_fresh_joins_and_transfers_never_loop() {
    let dir = tempdir("anteroom-forged");
    std::fs::create_dir_all(dir.join("forged")).expect("mkdir");
    let port = free_port();
    let rest = stores_in(&dir) + &sleeper("forged", "1.21.4", port, &dir);
    let _server = ServerProcess(dir.join("forged"));
    let warden = Warden::start("anteroom-forged", &config("", None, &rest));
    let p = warden.port.to_string();
    // A well-formed ticket with a wrong signature (version 1, IPv4 127.0.0.1, far future).
    let mut forged = vec![1u8, 4, 127, 0, 0, 1];
    forged.extend_from_slice(&u64::MAX.to_be_bytes());
    forged.extend_from_slice(&[7u8; 16]);
    forged.extend_from_slice(&6u16.to_be_bytes());
    forged.extend_from_slice(b"forged");
    forged.extend_from_slice(&[0u8; 32]);
    let forged = hex(&forged);
    let join = |extra: &[&str]| {
        let mut args = vec![
            "--port",
            &p,
            "--version",
            "1.21.4",
            "--server-host",
            "forged.ante.test",
            "--chat",
            "hello",
            "--timeout-ms",
            "60000",
        ];
        args.extend_from_slice(extra);
        player(&args)
    };

    // Asleep: the forged ticket does not skip the wake; the player waits in the anteroom
    // like any join and is transferred exactly once, with a real ticket.
    let (ok, lines) = join(&["--intent", "3", "--ticket", &forged]);
    assert!(ok, "{lines:?}\n{}", warden.log());
    assert_eq!(last_result(&lines)["transfers"], 1, "{lines:?}");
    assert!(warden.log().contains("ticket rejected"), "{}", warden.log());

    // Awake: intent 3 with garbage is an ordinary join to the running server.
    let (ok, lines) = join(&["--intent", "3", "--ticket", "00ff"]);
    assert!(ok, "{lines:?}\n{}", warden.log());
    assert_eq!(last_result(&lines)["transfers"], 0, "{lines:?}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A restore slowed to about a minute (archive bandwidth capped): players wait in the
/// anteroom the whole time, stay connected, and arrive once the world is back, unchanged.
#[test]
fn a_minute_long_restore_keeps_players_connected_until_they_arrive() {
    let dir = tempdir("anteroom-slow");
    let data = dir.join("slow");
    std::fs::create_dir_all(data.join("world/region")).expect("mkdir");
    let mut files = Vec::new();
    for i in 0..3 {
        let bytes = incompressible(10 << 20, 0x1234_5678_9ABC_DEF1 ^ i as u64);
        let name = format!("world/region/r.{i}.0.mca");
        std::fs::write(data.join(&name), &bytes).expect("write");
        files.push((name, bytes));
    }
    let port = free_port();
    let backend = peers_dir().join("backend.js");
    let server_cfg = format!(
        "{}sleep_after = \"2s\"\narchive_after = \"1s\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\n\
         runtime = {{ kind = \"process\", command = [\"node\", \"{}\", \"--version\", \"1.21.4\", \"--port\", \"{port}\"], dir = \"{}\" }}\n",
        server("slow", "slow.ante.test", &format!("127.0.0.1:{port}")),
        backend.display(),
        data.display()
    );
    let _server = ServerProcess(data.clone());
    {
        // Archive at full speed first.
        let warden = Warden::start(
            "anteroom-slow-a",
            &config("", None, &(stores_in(&dir) + &server_cfg)),
        );
        let until = std::time::Instant::now() + std::time::Duration::from_secs(90);
        while data.exists() || !warden.log().contains("archived and verified") {
            assert!(
                std::time::Instant::now() < until,
                "never archived:\n{}",
                warden.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    // 30 MiB of incompressible world at 0.5 MiB/s: about a minute of restore.
    let slow =
        stores_in(&dir).replace("[archive]\n", "[archive]\nmax_mib_per_sec = 0.5\n") + &server_cfg;
    let warden = Warden::start("anteroom-slow-b", &config("", None, &slow));
    let players: Vec<_> = (0..3)
        .map(|i| {
            named_player_spawn(
                warden.port,
                &format!("patient{i}"),
                "slow.ante.test",
                &["--chat", "worth the wait", "--timeout-ms", "180000"],
            )
        })
        .collect();
    for child in players {
        let (ok, lines) = player_wait(child);
        assert!(ok, "{lines:?}\n{}", warden.log());
        assert_eq!(last_result(&lines)["transfers"], 1, "{lines:?}");
    }
    let log = warden.log();
    assert!(log.contains("state=\"restoring\""), "{log}");
    assert_eq!(
        log.matches("anteroom: transferred to the ready server")
            .count(),
        3,
        "{log}"
    );
    for (name, bytes) in &files {
        assert!(
            std::fs::read(data.join(name)).expect("restored file") == *bytes,
            "{name} differs"
        );
    }
}

/// Warm-swap restart with 20 players on the server: `warden restart` moves them to the
/// anteroom over RCON, restarts the server on the same data, and transfers them back.
/// Nobody is disconnected: each player's connection survives its whole stay.
#[test]
fn warm_swap_restart_keeps_twenty_players_and_brings_them_back() {
    // The RCON password reaches Warden through the environment, as in production.
    std::env::set_var("WARDEN_TEST_RCON_PASSWORD", "swap-secret");
    let dir = tempdir("anteroom-swap");
    let data = dir.join("swap");
    std::fs::create_dir_all(&data).expect("mkdir");
    let (port, rcon) = (free_port(), free_port());
    let backend = peers_dir().join("backend.js");
    let rest = stores_in(&dir)
        + &format!(
            "{}sleep_after = \"1h\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\n\
             rcon = {{ address = \"127.0.0.1:{rcon}\", password_env = \"WARDEN_TEST_RCON_PASSWORD\" }}\n\
             runtime = {{ kind = \"process\", command = [\"node\", \"{}\", \"--version\", \"1.21.4\", \"--port\", \"{port}\", \
             \"--rcon-port\", \"{rcon}\", \"--rcon-password\", \"swap-secret\"], dir = \"{}\" }}\n",
            server("swap", "swap.ante.test", &format!("127.0.0.1:{port}")),
            backend.display(),
            data.display()
        );
    let _server = ServerProcess(data.clone());
    let warden = Warden::start("anteroom-swap", &config("", None, &(rest + API)));
    let players: Vec<_> = (0..20)
        .map(|i| {
            named_player_spawn(
                warden.port,
                &format!("stayer{i}"),
                "swap.ante.test",
                &[
                    "--hold-ms",
                    "40000",
                    "--final-line",
                    "true",
                    "--timeout-ms",
                    "60000",
                ],
            )
        })
        .collect();
    let server_log = || std::fs::read_to_string(data.join("warden-server.log")).unwrap_or_default();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server_log().matches("\"event\":\"join\"").count() < 20 {
        assert!(
            std::time::Instant::now() < until,
            "players never all joined:\n{}",
            warden.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let (ok, said) = warden.cli(&warden.token("operator"), &["restart", "swap"]);
    assert!(ok, "{said}\n{}", warden.log());
    assert!(said.contains("20 players moved to the anteroom"), "{said}");

    for child in players {
        let (ok, lines) = player_wait(child);
        assert!(ok, "a player was disconnected: {lines:?}\n{}", warden.log());
        let end = last_result(&lines);
        assert_eq!(end["phase"], "held", "{lines:?}");
        // The first join woke the server through the anteroom (1 transfer); the swap sent
        // them out by RCON and back by the anteroom (2 more), each time without a disconnect.
        assert_eq!(end["transfers"], 3, "{lines:?}");
        assert_eq!(end["logins"], 2, "{lines:?}");
    }
    let log = warden.log();
    assert!(log.contains("warm-swap complete"), "{log}");
    assert_eq!(log.matches("server process started").count(), 2, "{log}");
    assert!(
        server_log().contains("\"command\":\"stop\"") || log.contains("stopping the old server")
    );
}

/// A server that cannot start: the waiting 1.21 player is told why, in the anteroom,
/// instead of waiting until the client gives up.
#[test]
fn a_failed_start_disconnects_the_waiting_player_with_the_reason() {
    let dir = tempdir("anteroom-fail");
    std::fs::create_dir_all(dir.join("broken")).expect("mkdir");
    let port = free_port();
    let rest = stores_in(&dir)
        + &format!(
            "{}start_timeout = \"3s\"\nruntime = {{ kind = \"process\", command = [\"node\", \"-e\", \"process.exit(3)\"], dir = \"{}\" }}\n",
            server("broken", "broken.ante.test", &format!("127.0.0.1:{port}")),
            dir.join("broken").display()
        );
    let warden = Warden::start("anteroom-fail", &config("", None, &rest));
    let (ok, lines) = player(&[
        "--port",
        &warden.port.to_string(),
        "--version",
        "1.21.4",
        "--server-host",
        "broken.ante.test",
        "--timeout-ms",
        "30000",
    ]);
    assert!(!ok, "{lines:?}");
    let end = last_result(&lines);
    assert_eq!(end["kick_state"], "configuration", "{lines:?}");
    let kick = end["kick"].as_str().unwrap_or_default();
    assert!(
        kick.contains("broken") && kick.contains("not ready within 3 s"),
        "{lines:?}\n{}",
        warden.log()
    );
}
