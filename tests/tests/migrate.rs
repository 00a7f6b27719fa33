//! Migration between two appliances on one Redis with shared archive storage: the players
//! on the server wait in the anteroom while its world moves, then play on the other node,
//! reached through the same edge; the world arrives byte for byte.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use warden_tests::*;

/// One appliance's config: its own copy of server `mig` (process runtime on `port`, RCON on
/// `rcon`, world in `data`), both nodes' addresses, the shared Redis and archive.
fn node(
    name: &str,
    redis: u16,
    archive: &Path,
    data: &Path,
    port: u16,
    rcon: u16,
    ports: (u16, u16),
) -> String {
    let backend = peers_dir().join("backend.js");
    config(
        "",
        None,
        &format!(
            "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{redis}\"\npath = \"{{dir}}\"\n[archive]\npath = \"{}\"\n\
             [lifecycle]\nappliance = \"{name}\"\n{API}\
             {}sleep_after = \"1h\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\n\
             node_backends = {{ \"node-a\" = \"127.0.0.1:{}\", \"node-b\" = \"127.0.0.1:{}\" }}\n\
             rcon = {{ address = \"127.0.0.1:{rcon}\", password_env = \"WARDEN_TEST_RCON_PASSWORD\" }}\n\
             runtime = {{ kind = \"process\", command = [\"node\", \"{}\", \"--version\", \"1.21.4\", \"--port\", \"{port}\", \
             \"--rcon-port\", \"{rcon}\", \"--rcon-password\", \"mig-secret\"], dir = \"{}\" }}\n",
            archive.display(),
            server("mig", "mig.test", &format!("127.0.0.1:{port}")),
            ports.0,
            ports.1,
            backend.display(),
            data.display()
        ),
    )
}

fn joins_on(log: &Path, port: u16) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"event\":\"join\"") && l.contains(&format!("\"port\":{port}")))
        .count()
}

#[test]
fn migrate_moves_a_running_server_and_its_players_to_another_appliance() {
    std::env::set_var("WARDEN_TEST_RCON_PASSWORD", "mig-secret");
    let redis = Redis::start();
    let dir = tempdir("migrate");
    let archive = dir.join("shared-archive");
    let (data_a, data_b) = (dir.join("world-a"), dir.join("world-b"));
    std::fs::create_dir_all(&data_a).expect("mkdir");
    let (port_a, port_b, rcon_a, rcon_b) = (free_port(), free_port(), free_port(), free_port());
    let _a_proc = ServerProcess(data_a.clone());
    let _b_proc = ServerProcess(data_b.clone());
    let a = Warden::start(
        "migrate-a",
        &node(
            "node-a",
            redis.port,
            &archive,
            &data_a,
            port_a,
            rcon_a,
            (port_a, port_b),
        ),
    );
    let b = Warden::start(
        "migrate-b",
        &node(
            "node-b",
            redis.port,
            &archive,
            &data_b,
            port_b,
            rcon_b,
            (port_a, port_b),
        ),
    );
    // The world: a region file that must arrive intact.
    let region = incompressible(3 << 20, 7);
    std::fs::create_dir_all(data_a.join("world/region")).expect("mkdir");
    std::fs::write(data_a.join("world/region/r.0.0.mca"), &region).expect("write");

    // Three players join through A's edge; A wakes the server on its node.
    let players: Vec<_> = (0..3)
        .map(|i| {
            named_player_spawn(
                a.port,
                &format!("mover{i}"),
                "mig.test",
                &[
                    "--hold-ms",
                    "45000",
                    "--final-line",
                    "true",
                    "--timeout-ms",
                    "90000",
                ],
            )
        })
        .collect();
    wait_for(
        "three players on node A",
        Duration::from_secs(60),
        || a.log(),
        || joins_on(&data_a.join("warden-server.log"), port_a) >= 3,
    );

    let (ok, said) = a.cli(&a.token("operator"), &["migrate", "mig", "--to", "node-b"]);
    assert!(ok, "{said}\nA:\n{}\nB:\n{}", a.log(), b.log());
    assert!(
        said.contains("moved to node-b") && said.contains("3 players"),
        "{said}"
    );

    for child in players {
        let (ok, lines) = player_wait(child);
        assert!(ok, "a player was disconnected: {lines:?}\n{}", a.log());
        let end: &Value = lines.last().expect("result");
        assert_eq!(end["phase"], "held", "{lines:?}");
        // In through the anteroom (1), out by RCON (2), back by the anteroom (3); one play
        // login on each node.
        assert_eq!(end["transfers"], 3, "{lines:?}");
        assert_eq!(end["logins"], 2, "{lines:?}");
    }
    // They played on node B, reached through node A's edge.
    assert_eq!(
        joins_on(&data_b.join("warden-server.log"), port_b),
        3,
        "{}",
        b.log()
    );
    assert_eq!(
        std::fs::read(data_b.join("world/region/r.0.0.mca")).expect("restored"),
        region
    );
    assert!(
        !data_a.exists(),
        "node A's copy is gone after the verified archive"
    );

    // Both appliances agree where it is; a status ping through A shows B's server.
    let token = b.token("viewer");
    for w in [&a, &b] {
        let (_, s) = w.api("GET", "/v1/servers/mig", Some(&token), None);
        assert_eq!(s["state"], "active", "{s}");
    }
    for w in [&a, &b] {
        let (_, s) = w.api("GET", "/v1/servers/mig", Some(&token), None);
        assert_eq!(s["node"], "node-b", "{s}");
    }
    let (_, events) = b.api(
        "GET",
        "/v1/events?server=mig&limit=1000",
        Some(&token),
        None,
    );
    assert!(events.to_string().contains("placed on node-b"), "{events}");
    // Asleep on B, it is woken there by a join at A's edge (A asks B through the store).
    let (ok, said) = b.cli(&b.token("operator"), &["sleep", "mig"]);
    assert!(ok, "{said}\n{}", b.log());
    wait_for(
        "A to see it asleep",
        Duration::from_secs(10),
        || a.log(),
        || a.api("GET", "/v1/servers/mig", Some(&token), None).1["state"] == "sleeping",
    );
    let (ok, lines) = player(&[
        "--port",
        &a.port.to_string(),
        "--version",
        "1.21.4",
        "--server-host",
        "mig.test",
        "--username",
        "latecomer",
        "--chat",
        "hi",
        "--timeout-ms",
        "60000",
    ]);
    assert!(ok, "{lines:?}\nA:\n{}\nB:\n{}", a.log(), b.log());
    assert_eq!(
        joins_on(&data_b.join("warden-server.log"), port_b),
        4,
        "{}",
        b.log()
    );
    assert!(!data_a.exists(), "A never started it again");

    // Refused: moving it to where it is, or to a node without an address.
    let op = a.token("operator");
    let (ok, said) = b.cli(&op, &["migrate", "mig", "--to", "node-b"]);
    assert!(!ok && said.contains("HTTP 409"), "{said}");
    let (ok, said) = b.cli(&op, &["migrate", "mig", "--to", "node-c"]);
    assert!(!ok && said.contains("no address on node-c"), "{said}");
}

/// `warden node drain`: node A owns `mig`, which two players play on. Draining A moves it
/// to B (the only other node in its `node_backends`) with the players kept through the
/// anteroom; A ends empty and stays `draining` (no new servers) until uncordoned. A node
/// that does not exist is refused.
#[test]
fn draining_a_node_moves_its_server_away_with_the_players_kept() {
    std::env::set_var("WARDEN_TEST_RCON_PASSWORD", "mig-secret");
    let redis = Redis::start();
    let dir = tempdir("drain");
    let archive = dir.join("shared-archive");
    let (data_a, data_b) = (dir.join("world-a"), dir.join("world-b"));
    std::fs::create_dir_all(data_a.join("world")).expect("mkdir");
    std::fs::write(data_a.join("world/level.dat"), b"drained").expect("write");
    let (port_a, port_b, rcon_a, rcon_b) = (free_port(), free_port(), free_port(), free_port());
    let _procs = (ServerProcess(data_a.clone()), ServerProcess(data_b.clone()));
    let a = Warden::start(
        "drain-a",
        &node(
            "node-a",
            redis.port,
            &archive,
            &data_a,
            port_a,
            rcon_a,
            (port_a, port_b),
        ),
    );
    let b = Warden::start(
        "drain-b",
        &node(
            "node-b",
            redis.port,
            &archive,
            &data_b,
            port_b,
            rcon_b,
            (port_a, port_b),
        ),
    );
    let logs = || format!("A:\n{}\nB:\n{}", a.log(), b.log());
    let players: Vec<_> = (0..2)
        .map(|i| {
            named_player_spawn(
                a.port,
                &format!("drained{i}"),
                "mig.test",
                &[
                    "--hold-ms",
                    "40000",
                    "--final-line",
                    "true",
                    "--timeout-ms",
                    "90000",
                ],
            )
        })
        .collect();
    wait_for(
        "two players on node A",
        Duration::from_secs(60),
        logs,
        || joins_on(&data_a.join("warden-server.log"), port_a) >= 2,
    );

    let op = a.token("operator");
    let (ok, said) = b.cli(&op, &["node", "drain", "node-z"]);
    assert!(!ok && said.contains("404"), "{said}");
    let (ok, said) = b.cli(&op, &["node", "drain", "node-a"]);
    assert!(ok && said.contains("node-a: draining"), "{said}");
    wait_for(
        "mig to run on node B",
        Duration::from_secs(90),
        logs,
        || {
            let s = b.api("GET", "/v1/servers/mig", Some(&op), None).1;
            s["node"] == "node-b" && s["state"] == "active"
        },
    );
    for child in players {
        let (ok, lines) = player_wait(child);
        assert!(ok, "a player was disconnected: {lines:?}\n{}", logs());
        let end: &Value = lines.last().expect("result");
        assert_eq!(
            (end["phase"].as_str(), end["transfers"].as_u64()),
            (Some("held"), Some(3)),
            "{lines:?}"
        );
    }
    assert_eq!(
        std::fs::read(data_b.join("world/level.dat")).expect("moved world"),
        b"drained"
    );
    wait_for(
        "A to report itself empty",
        Duration::from_secs(20),
        logs,
        || {
            let n = a.api("GET", "/v1/nodes/node-a", Some(&op), None).1;
            n["state"] == "draining" && n["servers"] == 0
        },
    );
    assert!(
        a.log().contains("drained: this node owns no servers"),
        "{}",
        a.log()
    );
    let (ok, said) = a.cli(&op, &["node", "uncordon", "node-a"]);
    assert!(ok && said.contains("node-a: ready"), "{said}");
}
