//! A fleet: several `warden` processes on one real redis-server, each a node with its own
//! data directory. Every server has exactly one owner node from the moment it exists; the
//! other appliances forward its players there and ask the owner to wake it (never waking
//! it in their own directory); a fleet started all at once comes up with one owner per
//! server; new servers land best-fit by memory, and a wake that does not fit its node
//! waits until another server there sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use warden_tests::*;

/// The `[store]`, `[archive]`, `[lifecycle]`, `[node]` and `[api]` of appliance `name` on
/// the shared Redis; `node` holds extra `[node]` keys.
fn fleet_sections(name: &str, redis: u16, shared: &Path, node: &str) -> String {
    format!(
        "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{redis}\"\npath = \"{{dir}}\"\n\
         [archive]\npath = \"{}/archive\"\n[lifecycle]\nappliance = \"{name}\"\nhold = \"50s\"\n\
         [node]\n{node}\n{API}",
        shared.display()
    )
}

/// Server `id` (backend.js 1.20.4) on `ip:port`, run as a process in `data`.
fn process_server(id: &str, ip: &str, port: u16, data: &Path, sleep_after: &str) -> String {
    versioned_server(id, "1.20.4", ip, port, data, sleep_after)
}

/// [`process_server`] speaking `version`.
fn versioned_server(
    id: &str,
    version: &str,
    ip: &str,
    port: u16,
    data: &Path,
    sleep_after: &str,
) -> String {
    format!(
        "{}sleep_after = \"{sleep_after}\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\n\
         runtime = {{ kind = \"process\", command = [\"node\", \"{}\", \"--version\", \"{version}\", \
         \"--host\", \"{ip}\", \"--port\", \"{port}\"], dir = \"{}\" }}\n",
        server(id, &format!("{id}.test"), &format!("{ip}:{port}")),
        peers_dir().join("backend.js").display(),
        data.display()
    )
}

/// A 1.20.4 player joining `host` through `w`'s edge, chatting once and leaving.
fn join(w: &Warden, host: &str, name: &str) -> (bool, Vec<Value>) {
    chat_once(w.port, host, name, 60_000)
}

fn server_info(w: &Warden, token: &str, id: &str) -> Value {
    w.api("GET", &format!("/v1/servers/{id}"), Some(token), None)
        .1
}

fn joins_in(data: &Path) -> usize {
    std::fs::read_to_string(data.join("warden-server.log"))
        .unwrap_or_default()
        .matches("\"event\":\"join\"")
        .count()
}

/// Two appliances, A (127.0.0.2, node-a) and B (127.0.0.3, node-b), on one Redis, each
/// with its own copy of server `world` (asleep after `sleep_after`) and its own data
/// directory; A starts first, so A owns it.
struct Pair {
    b: Warden,
    a: Warden,
    data_a: std::path::PathBuf,
    data_b: std::path::PathBuf,
    _guards: (ServerProcess, ServerProcess),
    _redis: Redis,
}

impl Pair {
    fn start(tag: &str, sleep_after: &str) -> Pair {
        let redis = Redis::start();
        let dir = tempdir(&format!("fleet-{tag}"));
        let (data_a, data_b) = (dir.join("world-a"), dir.join("world-b"));
        let port = free_port();
        let guards = (ServerProcess(data_a.clone()), ServerProcess(data_b.clone()));
        let node = |name: &str, ip: &str, data: &Path| {
            config(
                "",
                None,
                &(fleet_sections(name, redis.port, &dir, &format!("address = \"{ip}\"\n"))
                    + &process_server("world", ip, port, data, sleep_after)),
            )
        };
        let a = Warden::start(
            &format!("fleet-{tag}-a"),
            &node("node-a", "127.0.0.2", &data_a),
        );
        let b = Warden::start(
            &format!("fleet-{tag}-b"),
            &node("node-b", "127.0.0.3", &data_b),
        );
        Pair {
            b,
            a,
            data_a,
            data_b,
            _guards: guards,
            _redis: redis,
        }
    }
}

/// The bug this fixes: two appliances both defining `world` woke it in whichever directory
/// the joining player's appliance had. Now the node that created the record owns it; a join
/// at the other appliance, before and after the server slept, is forwarded to the owner's
/// address and wakes it there. The other appliance never starts it.
#[test]
fn one_owner_runs_a_server_both_appliances_define_and_the_other_forwards() {
    let pair = Pair::start("own", "3s");
    let (a, b, data_a, data_b) = (&pair.a, &pair.b, &pair.data_a, &pair.data_b);
    let viewer = a.token("viewer");
    let logs = || format!("A:\n{}\nB:\n{}", a.log(), b.log());
    for w in [&a, &b] {
        let s = server_info(w, &viewer, "world");
        assert_eq!(s["node"], "node-a", "{s}\n{}", logs());
        assert_eq!(s["state"], "sleeping", "{s}");
    }
    // Both nodes are registered and up; B's CLI shows the owner.
    let (ok, nodes) = b.cli(&viewer, &["nodes"]);
    assert!(ok, "{nodes}");
    for (n, addr) in [("node-a", "127.0.0.2"), ("node-b", "127.0.0.3")] {
        let line = nodes.lines().find(|l| l.starts_with(n)).unwrap_or_default();
        assert!(
            line.contains("ready") && line.contains(" up ") && line.contains(addr),
            "{nodes}"
        );
    }
    let (ok, status) = b.cli(&viewer, &["status"]);
    assert!(ok && status.contains("node-a"), "{status}");
    // Cordoning takes an operator; it shows everywhere and is undone by uncordon.
    let op = b.token("operator");
    let (ok, said) = b.cli(&viewer, &["node", "cordon", "node-b"]);
    assert!(!ok && said.contains("403"), "{said}");
    let (ok, said) = a.cli(&op, &["node", "cordon", "node-b"]);
    assert!(ok && said.contains("node-b: cordoned"), "{said}");
    let (_, n) = b.api("GET", "/v1/nodes/node-b", Some(&viewer), None);
    assert_eq!(n["state"], "cordoned", "{n}");
    let (ok, said) = b.cli(&op, &["node", "uncordon", "node-b"]);
    assert!(ok && said.contains("node-b: ready"), "{said}");
    let (ok, said) = b.cli(&op, &["node", "cordon", "node-z"]);
    assert!(!ok && said.contains("404"), "{said}");

    // Joins at the non-owner, twice: once from cold, once after it slept again.
    for round in 0..2 {
        let (ok, lines) = join(b, "world.test", &format!("viaB{round}"));
        assert!(ok, "round {round}: {lines:?}\n{}", logs());
        assert_eq!(joins_in(data_a), round + 1, "{}", logs());
        wait_for(
            "both appliances to see it asleep",
            Duration::from_secs(30),
            logs,
            || {
                [&a, &b]
                    .iter()
                    .all(|w| server_info(w, &viewer, "world")["state"] == "sleeping")
            },
        );
    }
    assert!(
        !data_b.join(".warden-server.pid").exists() && !data_b.join("warden-server.log").exists(),
        "B started its own copy:\n{}",
        logs()
    );
    assert_eq!(a.log().matches("server process started").count(), 2);
    assert_eq!(b.log().matches("server process started").count(), 0);
    // Only the owner acts on it: B refuses to archive it.
    let (ok, said) = b.cli(&op, &["archive", "world"]);
    assert!(!ok && said.contains("owned by node-a"), "{said}");
}

/// A fleet coming back after a power cut: three appliances defining the same servers start
/// at the same instant. Every one comes up (it used to exit with "server 'world' already
/// exists") and every server has one owner that all three agree on. Five times.
#[test]
fn a_fleet_started_at_the_same_instant_comes_up_with_one_owner_per_server() {
    let ids = ["world", "lobby", "arena"];
    for round in 0..5 {
        let redis = Redis::start();
        let dir = tempdir(&format!("fleet-cold-{round}"));
        let ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
        let body = |name: &str| {
            let servers: String = ids
                .iter()
                .zip(&ports)
                .map(|(id, port)| {
                    process_server(id, "127.0.0.1", *port, &dir.join(name).join(id), "1h")
                })
                .collect();
            config(
                "",
                None,
                &(fleet_sections(name, redis.port, &dir, "") + &servers),
            )
        };
        let names = ["n1", "n2", "n3"];
        let wardens: Vec<Warden> = std::thread::scope(|s| {
            let started: Vec<_> = names
                .iter()
                .map(|n| {
                    let body = body(n);
                    s.spawn(move || Warden::start(&format!("fleet-cold-{round}-{n}"), &body))
                })
                .collect();
            started
                .into_iter()
                .map(|h| h.join().expect("an appliance did not come up"))
                .collect()
        });
        let viewer = wardens[0].token("viewer");
        for id in ids {
            let owners: Vec<Value> = wardens
                .iter()
                .map(|w| server_info(w, &viewer, id)["node"].clone())
                .collect();
            assert!(
                owners[0].is_string() && owners.iter().all(|o| *o == owners[0]),
                "round {round}, {id}: owners {owners:?}"
            );
        }
        let (_, nodes) = wardens[0].api("GET", "/v1/nodes", Some(&viewer), None);
        assert_eq!(nodes.as_array().map(Vec::len), Some(3), "{nodes}");
    }
}

/// Placement by memory over two small nodes (A: 3 GB, B: 2 GB), with servers defined
/// through the API: each lands on the node it fits most tightly; one larger than every node
/// is refused with the reason. On B (2 GB), a wake that does not fit while another server
/// runs waits (counted in `warden_capacity_waits_total`) and gets in once that one sleeps.
#[test]
fn servers_land_best_fit_and_a_wake_beyond_capacity_waits_for_room() {
    let redis = Redis::start();
    let dir = tempdir("fleet-fit");
    let node = |name: &str, gb: &str| {
        config(
            "",
            None,
            &fleet_sections(name, redis.port, &dir, &format!("memory_gb = {gb}\n")),
        )
    };
    let a = Warden::start("fleet-fit-a", &node("node-a", "3.0"));
    let b = Warden::start("fleet-fit-b", &node("node-b", "2.0"));
    let logs = || format!("A:\n{}\nB:\n{}", a.log(), b.log());
    let admin = a.token("admin");
    // A places what is created through it: wait until its copy of the fleet has B.
    wait_for("A to know node B", Duration::from_secs(10), logs, || {
        a.metric("warden_node_up{node=\"node-b\"}") == 1.0
    });
    let backend = peers_dir().join("backend.js");
    let mut guards = Vec::new();
    let mut define = |id: &str, gb: f64| {
        let (port, data) = (free_port(), dir.join(id));
        guards.push(ServerProcess(data.clone()));
        let spec = json!({
            "id": id, "hosts": [format!("{id}.test")], "backend": format!("127.0.0.1:{port}"),
            "memory_gb": gb, "sleep_after_secs": 10, "start_timeout_secs": 60,
            "runtime": {"kind": "process", "dir": data,
                "command": ["node", backend, "--version", "1.20.4", "--port", port.to_string()]},
        });
        a.api("POST", "/v1/servers", Some(&admin), Some(&spec.to_string()))
    };
    // Nothing runs yet: 2.5 GB fits only A; 2 GB fills B exactly; 1 GB leaves less on B.
    for (id, gb, want) in [
        ("big", 2.5, "node-a"),
        ("two", 2.0, "node-b"),
        ("one", 1.0, "node-b"),
    ] {
        let (status, s) = define(id, gb);
        assert_eq!(status, 201, "{s}");
        wait_for(
            "the owner to be recorded",
            Duration::from_secs(10),
            logs,
            || server_info(&a, &admin, id)["node"] == want,
        );
    }
    let (status, s) = define("huge", 5.0);
    assert_eq!(status, 422, "{s}");
    let msg = s["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("more than any node offers") && msg.contains("3 GB"),
        "{msg}"
    );
    assert!(b.metric("warden_node_capacity_bytes{node=\"node-b\"}") > 2.0e9);

    // `one` runs on B (1 of 2 GB); `two` (2 GB) does not fit beside it and waits.
    let (ok, lines) = join(&b, "one.test", "first");
    assert!(ok, "{lines:?}\n{}", logs());
    let waiting = std::thread::spawn({
        let port = b.port.to_string();
        move || {
            player(&[
                "--port",
                &port,
                "--version",
                "1.20.4",
                "--server-host",
                "two.test",
                "--username",
                "second",
                "--chat",
                "hi",
                "--timeout-ms",
                "60000",
            ])
        }
    });
    wait_for(
        "the wake to wait for capacity",
        Duration::from_secs(10),
        logs,
        || b.metric("warden_capacity_waits_total") >= 1.0,
    );
    assert_eq!(server_info(&b, &admin, "two")["state"], "sleeping");
    assert_eq!(server_info(&b, &admin, "one")["state"], "active");
    // `one` sleeps after 10 s without players; then `two` starts and its player gets in.
    let (ok, lines) = waiting.join().expect("player thread");
    assert!(ok, "{lines:?}\n{}", logs());
    assert_eq!(server_info(&b, &admin, "one")["state"], "sleeping");
    assert_eq!(server_info(&b, &admin, "two")["state"], "active");
    assert!(b.log().contains("capacity freed: starting"), "{}", b.log());
    assert_eq!(joins_in(&dir.join("two")), 1);
    drop(guards);
}

/// A 1.21.4 player (it waits in the anteroom) joining `host` at `w`, chatting once.
fn anteroom_join(w: &Warden, host: &str, name: &str) -> std::process::Child {
    named_player_spawn(
        w.port,
        name,
        host,
        &["--chat", "hi", "--timeout-ms", "150000"],
    )
}

/// Self-healing. An edge (E) and two nodes (B, C) define `world`; B owns it. A player
/// plays on it, it sleeps and is backed up at the stop. Then B dies for good: kill -9 and
/// its data directory deleted. A player joining at E meanwhile waits in the anteroom; the
/// fleet declares B dead once its lease lapsed past `dead_after`, re-places `world` on C,
/// which restores it from that backup (byte for byte), and the player gets in. Webhooks
/// hear `node_down` and `server_recovered` (with the backup's age). B, restarted, comes
/// back as an empty ready node and starts nothing it no longer owns.
#[test]
fn a_dead_nodes_server_comes_back_on_another_node_from_its_last_backup() {
    let redis = Redis::start();
    let dir = tempdir("fleet-heal");
    let (data_b, data_c) = (dir.join("b/world"), dir.join("c/world"));
    let port = free_port();
    let _guards = (ServerProcess(data_b.clone()), ServerProcess(data_c.clone()));
    let (hook, hooked) = webhook_sink();
    let hooks = format!(
        "[[webhooks]]\nurl = \"http://127.0.0.1:{hook}/h\"\n\
         events = [\"node_down\", \"server_recovered\"]\n"
    );
    let appliance = |name: &str, ip: &str, node: &str, data: &Path| {
        config(
            "",
            None,
            &(fleet_sections(
                name,
                redis.port,
                &dir,
                &format!("address = \"{ip}\"\ndead_after = \"2s\"\n{node}"),
            ) + &hooks
                + &versioned_server("world", "1.21.4", ip, port, data, "3s")),
        )
    };
    // The world B starts with: a level and a region file the game server never touches.
    std::fs::create_dir_all(data_b.join("world/region")).unwrap();
    std::fs::write(data_b.join("world/level.dat"), b"level").unwrap();
    std::fs::write(
        data_b.join("world/region/r.0.0.mca"),
        incompressible(2 << 20, 7),
    )
    .unwrap();
    let mut b = Warden::start(
        "fleet-heal-b",
        &appliance("node-b", "127.0.0.3", "", &data_b),
    );
    let c = Warden::start(
        "fleet-heal-c",
        &appliance("node-c", "127.0.0.4", "", &data_c),
    );
    let e = Warden::start(
        "fleet-heal-e",
        &appliance(
            "edge-e",
            "127.0.0.2",
            "roles = [\"edge\"]\n",
            &dir.join("e/world"),
        ),
    );
    let viewer = e.token("viewer");
    let dirs = [b.dir.clone(), c.dir.clone(), e.dir.clone()];
    let logs = || {
        dirs.iter()
            .map(|d| {
                let log = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
                format!(
                    "{}:\n{}{}\n",
                    d.display(),
                    log("warden.log"),
                    log("warden-again.log")
                )
            })
            .collect::<String>()
    };
    assert_eq!(
        server_info(&e, &viewer, "world")["node"],
        "node-b",
        "{}",
        logs()
    );

    // Played on B through the edge; asleep again, backed up at the stop.
    let (ok, lines) = player_wait(anteroom_join(&e, "world.test", "first"));
    assert!(ok, "{lines:?}\n{}", logs());
    wait_for(
        "B to back up the world at its stop",
        Duration::from_secs(60),
        logs,
        || {
            b.log().contains("backup taken and verified")
                && server_info(&e, &viewer, "world")["state"] == "sleeping"
        },
    );
    let backed_up = tree(&data_b);
    assert!(backed_up.contains_key("world/region/r.0.0.mca"));

    // B's machine dies, with its disk.
    let _ = b.child.kill();
    let _ = b.child.wait();
    std::fs::remove_dir_all(&data_b).unwrap();
    let lost = std::time::Instant::now();
    let (ok, lines) = player_wait(anteroom_join(&e, "world.test", "patient"));
    let back_after = lost.elapsed();
    assert!(ok, "{lines:?}\n{}", logs());
    assert_eq!(lines.last().unwrap()["transfers"], 1, "{lines:?}");
    println!(
        "node lost -> waiting player plays: {:.1} s",
        back_after.as_secs_f64()
    );

    // C owns and runs it, on the world of that backup.
    let s = server_info(&e, &viewer, "world");
    assert_eq!(
        (s["node"].as_str(), s["state"].as_str()),
        (Some("node-c"), Some("active")),
        "{s}"
    );
    let (_, n) = e.api("GET", "/v1/nodes/node-b", Some(&viewer), None);
    assert_eq!(n["state"], "dead", "{n}");
    assert_eq!(c.metric("warden_recoveries_total"), 1.0, "{}", c.log());
    assert!(c.log().contains("recovered from backup"), "{}", c.log());
    let now = tree(&data_c);
    for (name, bytes) in &backed_up {
        if name == "warden-server.log" {
            // C's start appended to the restored log.
            assert!(now[name].starts_with(bytes), "{name} was not restored");
        } else if name != ".warden-server.pid" {
            assert!(
                now.get(name) == Some(bytes),
                "{name} differs from the backup"
            );
        }
    }
    wait_for("the webhooks", Duration::from_secs(20), logs, || {
        hooked.lock().len() >= 2
    });
    let got = hooked.lock().clone();
    let down = got.iter().find(|h| h["event"] == "node_down").unwrap();
    assert_eq!(down["node"], "node-b", "{got:?}");
    let rec = got
        .iter()
        .find(|h| h["event"] == "server_recovered")
        .unwrap();
    assert_eq!(
        (rec["server"].as_str(), rec["node"].as_str()),
        (Some("world"), Some("node-c")),
        "{rec}"
    );
    assert!(
        rec["backup"].is_string() && rec["backup_age_ms"].is_u64(),
        "{rec}"
    );

    // B comes back (empty disk): a ready node that owns nothing and starts nothing.
    b.child = Warden::spawn(&b.dir, &b.config, false, "warden-again.log");
    assert!(b.wait_ready(), "{}", b.log_named("warden-again.log"));
    wait_for("B to be ready again", Duration::from_secs(20), logs, || {
        e.api("GET", "/v1/nodes/node-b", Some(&viewer), None).1["state"] == "ready"
    });
    let (ok, lines) = player_wait(anteroom_join(&b, "world.test", "viaB"));
    assert!(ok, "{lines:?}\n{}", b.log_named("warden-again.log"));
    assert_eq!(server_info(&b, &viewer, "world")["node"], "node-c");
    assert!(!data_b.exists(), "B made a world of its own");
    assert!(!b
        .log_named("warden-again.log")
        .contains("server process started"));
}

/// A node that was only paused (a frozen VM) is fenced when it wakes up. B runs `world`
/// (backed up while asleep) and is stopped with SIGSTOP: the fleet declares it dead and C
/// recovers `world` from the backup, where a player then plays. B, continued, learns at its
/// next renewal that it was declared dead: it stops the copy it still runs (the world on C
/// is the true one) and comes back as a ready node.
#[test]
fn a_paused_node_that_comes_back_stops_the_server_it_no_longer_owns() {
    let redis = Redis::start();
    let dir = tempdir("fleet-pause");
    let (data_b, data_c) = (dir.join("b/world"), dir.join("c/world"));
    let port = free_port();
    let _guards = (ServerProcess(data_b.clone()), ServerProcess(data_c.clone()));
    let appliance = |name: &str, ip: &str, data: &Path| {
        config(
            "",
            None,
            &(fleet_sections(
                name,
                redis.port,
                &dir,
                &format!("address = \"{ip}\"\ndead_after = \"2s\"\n"),
            ) + &process_server("world", ip, port, data, "1h")),
        )
    };
    std::fs::create_dir_all(data_b.join("world")).unwrap();
    std::fs::write(data_b.join("world/level.dat"), b"paused").unwrap();
    let b = Warden::start("fleet-pause-b", &appliance("node-b", "127.0.0.3", &data_b));
    let c = Warden::start("fleet-pause-c", &appliance("node-c", "127.0.0.4", &data_c));
    let logs = || format!("B:\n{}\nC:\n{}", b.log(), c.log());
    let op = b.token("operator");
    let (ok, said) = b.cli(&op, &["backup", "world"]);
    assert!(ok, "{said}\n{}", logs());
    let (ok, lines) = join(&c, "world.test", "onB");
    assert!(ok, "{lines:?}\n{}", logs());
    assert_eq!(joins_in(&data_b), 1);
    let on_b = std::net::SocketAddr::from(([127, 0, 0, 3], port));
    assert!(wait_listening(on_b, Duration::from_secs(1)));

    b.signal(libc::SIGSTOP);
    wait_for(
        "C to recover the world",
        Duration::from_secs(60),
        logs,
        || {
            let s = server_info(&c, &op, "world");
            s["node"] == "node-c" && s["state"] == "sleeping"
        },
    );
    assert_eq!(
        std::fs::read(data_c.join("world/level.dat")).unwrap(),
        b"paused"
    );
    let (ok, lines) = join(&c, "world.test", "onC");
    assert!(ok, "{lines:?}\n{}", logs());
    // The backup predates B's player: C's world has only C's.
    assert_eq!(joins_in(&data_c), 1);
    // B's copy still runs while B is frozen.
    assert!(wait_listening(on_b, Duration::from_secs(1)));

    b.signal(libc::SIGCONT);
    wait_for(
        "B to stop its stale copy",
        Duration::from_secs(30),
        logs,
        || {
            b.log().contains("declared dead by the fleet")
                && !wait_listening(on_b, Duration::from_millis(200))
        },
    );
    wait_for("B to register again", Duration::from_secs(20), logs, || {
        c.api("GET", "/v1/nodes/node-b", Some(&op), None).1["state"] == "ready"
    });
    let s = server_info(&b, &op, "world");
    assert_eq!(
        (s["node"].as_str(), s["state"].as_str()),
        (Some("node-c"), Some("active")),
        "{s}"
    );
}

/// Consolidation in a seeded fleet: three nodes, three API-defined servers spread over
/// them, a player on one. `warden consolidate --dry-run` names a node to free and changes
/// nothing; `warden consolidate` drains that node, whose servers move to the others, and
/// leaves the server with a player on it (and the player) alone. Fewer nodes hold servers.
#[test]
fn consolidation_frees_a_node_and_leaves_played_servers_alone() {
    let redis = Redis::start();
    let dir = tempdir("fleet-pack");
    let node = |name: &str| {
        config(
            "",
            None,
            &fleet_sections(name, redis.port, &dir, "memory_gb = 4.0\n"),
        )
    };
    let nodes = [
        Warden::start("fleet-pack-a", &node("node-a")),
        Warden::start("fleet-pack-b", &node("node-b")),
        Warden::start("fleet-pack-c", &node("node-c")),
    ];
    let a = &nodes[0];
    let logs = || {
        nodes
            .iter()
            .map(|w| format!("{}:\n{}\n", w.dir.display(), w.log()))
            .collect::<String>()
    };
    let admin = a.token("admin");
    let backend = peers_dir().join("backend.js");
    let mut guards = Vec::new();
    let ids = ["s1", "s2", "s3"];
    for (placed, id) in ids.into_iter().enumerate() {
        wait_for("every node up", Duration::from_secs(20), logs, || {
            ["node-a", "node-b", "node-c"]
                .iter()
                .all(|n| a.metric(&format!("warden_node_up{{node=\"{n}\"}}")) == 1.0)
        });
        let (port, data) = (free_port(), dir.join(id));
        std::fs::create_dir_all(data.join("world")).unwrap();
        std::fs::write(data.join("world/level.dat"), id).unwrap();
        guards.push(ServerProcess(data.clone()));
        let spec = json!({
            "id": id, "hosts": [format!("{id}.test")], "backend": format!("127.0.0.1:{port}"),
            "memory_gb": 1.0, "sleep_after_secs": 3600, "start_timeout_secs": 60,
            "runtime": {"kind": "process", "dir": data,
                "command": ["node", backend, "--version", "1.21.4", "--port", port.to_string()]},
        });
        let (status, s) = a.api("POST", "/v1/servers", Some(&admin), Some(&spec.to_string()));
        assert_eq!(status, 201, "{s}");
        // The next placement sees this one counted (in its owner's lease renewal, as A
        // reads the fleet), so the three spread over the three nodes.
        wait_for(
            "the placement to be counted",
            Duration::from_secs(20),
            logs,
            || {
                let (_, nodes) = a.api("GET", "/v1/nodes", Some(&admin), None);
                let owned: u64 = nodes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n["servers"].as_u64())
                    .sum();
                owned > placed as u64
            },
        );
        std::thread::sleep(Duration::from_millis(2100));
    }
    let owners = || -> Vec<String> {
        ids.iter()
            .map(|id| {
                server_info(a, &admin, id)["node"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    let before = owners();
    let held = named_player_spawn(
        a.port,
        "stayer",
        "s2.test",
        &[
            "--hold-ms",
            "40000",
            "--final-line",
            "true",
            "--timeout-ms",
            "90000",
        ],
    );
    wait_for(
        "s2 to run with its player",
        Duration::from_secs(60),
        logs,
        || server_info(a, &admin, "s2")["players_online"] == 1,
    );

    let (ok, said) = a.cli(&admin, &["consolidate", "--dry-run"]);
    assert!(
        ok && said.contains("can be emptied") && said.contains("dry run"),
        "{said}\n{}",
        logs()
    );
    assert_eq!(owners(), before, "a dry run moves nothing");
    let freed = said
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_ne!(
        freed, before[1],
        "the node with a player on its server was chosen: {said}"
    );

    let (ok, said) = a.cli(&admin, &["consolidate"]);
    assert!(
        ok && said.contains(&format!("draining {freed}")),
        "{said}\n{}",
        logs()
    );
    wait_for(
        "the freed node to be empty",
        Duration::from_secs(60),
        logs,
        || {
            let n = a
                .api("GET", &format!("/v1/nodes/{freed}"), Some(&admin), None)
                .1;
            n["servers"] == 0 && owners().iter().all(|o| *o != freed)
        },
    );
    let after = owners();
    assert_eq!(after[1], before[1], "s2 (played on) stayed");
    let holding = |o: &[String]| o.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert!(
        holding(&after) < holding(&before),
        "{before:?} -> {after:?}"
    );
    let (ok, lines) = player_wait(held);
    assert!(ok, "{lines:?}");
    assert_eq!(lines.last().unwrap()["logins"], 1, "never moved: {lines:?}");
    drop(guards);
}

/// Killing the non-owner mid-join: B (which does not own `world`) asks A to wake it for a
/// joining player and is then killed with SIGKILL. A starts `world` exactly once; B, started
/// again, forwards to it and never starts a copy of its own.
#[test]
fn killing_the_non_owner_mid_join_never_starts_a_second_copy() {
    let mut pair = Pair::start("midjoin", "1h");
    let (a, b, data_a, data_b) = (&pair.a, &mut pair.b, &pair.data_a, &pair.data_b);
    let viewer = a.token("viewer");
    assert_eq!(server_info(b, &viewer, "world")["node"], "node-a");
    let b_port = b.port.to_string();
    let joining = std::thread::spawn(move || {
        player(&[
            "--port",
            &b_port,
            "--version",
            "1.20.4",
            "--server-host",
            "world.test",
            "--username",
            "cutoff",
            "--timeout-ms",
            "30000",
        ])
    });
    wait_for(
        "A to be asked to wake it",
        Duration::from_secs(20),
        || a.log(),
        || a.log().contains("woken at another appliance's request"),
    );
    let _ = b.child.kill();
    let _ = b.child.wait();
    let _ = joining.join();
    wait_for(
        "A to run it",
        Duration::from_secs(60),
        || a.log(),
        || server_info(a, &viewer, "world")["state"] == "active",
    );
    b.child = Warden::spawn(&b.dir, &b.config, false, "warden-again.log");
    assert!(b.wait_ready(), "{}", b.log_named("warden-again.log"));
    let (ok, lines) = join(b, "world.test", "after");
    assert!(ok, "{lines:?}\n{}", b.log_named("warden-again.log"));
    assert_eq!(
        a.log().matches("server process started").count(),
        1,
        "{}",
        a.log()
    );
    assert!(joins_in(data_a) >= 1, "the second player plays on A's copy");
    assert!(
        !data_b.join(".warden-server.pid").exists() && !data_b.join("warden-server.log").exists()
    );
    for log in [b.log(), b.log_named("warden-again.log")] {
        assert!(!log.contains("server process started"), "{log}");
    }
}

/// An archived world comes back where there is room: `x` (API-defined) is archived on its
/// owner, which is then cordoned. A join at the other node gets it placed there for its
/// restore (one compare-and-set, by whichever node sees first that the owner cannot take
/// it), restored byte for byte and played on; the cordoned owner starts nothing, and both
/// appliances see where it runs.
#[test]
fn an_archived_server_is_restored_on_a_node_that_can_take_it() {
    let redis = Redis::start();
    let dir = tempdir("fleet-restore-place");
    let node = |name: &str| {
        config(
            "",
            None,
            &fleet_sections(name, redis.port, &dir, "memory_gb = 4.0\n"),
        )
    };
    let a = Warden::start("fleet-restore-a", &node("node-a"));
    let b = Warden::start("fleet-restore-b", &node("node-b"));
    let logs = || format!("A:\n{}\nB:\n{}", a.log(), b.log());
    let admin = a.token("admin");
    wait_for("A to know node B", Duration::from_secs(10), logs, || {
        a.metric("warden_node_up{node=\"node-b\"}") == 1.0
    });
    let (port, data) = (free_port(), dir.join("x"));
    std::fs::create_dir_all(data.join("world")).unwrap();
    std::fs::write(data.join("world/level.dat"), b"comes back").unwrap();
    let _guard = ServerProcess(data.clone());
    let spec = json!({
        "id": "x", "hosts": ["x.test"], "backend": format!("127.0.0.1:{port}"),
        "memory_gb": 1.0, "sleep_after_secs": 3600, "start_timeout_secs": 60,
        "runtime": {"kind": "process", "dir": data,
            "command": ["node", peers_dir().join("backend.js"), "--version", "1.20.4", "--port", port.to_string()]},
    });
    let (status, s) = a.api("POST", "/v1/servers", Some(&admin), Some(&spec.to_string()));
    assert_eq!(status, 201, "{s}");
    let mut owner = String::new();
    wait_for("x to be placed", Duration::from_secs(10), logs, || {
        owner = server_info(&a, &admin, "x")["node"]
            .as_str()
            .unwrap_or("")
            .to_string();
        !owner.is_empty()
    });
    let (owner_w, other_w, other) = match owner.as_str() {
        "node-a" => (&a, &b, "node-b"),
        _ => (&b, &a, "node-a"),
    };
    let (ok, said) = owner_w.cli(&admin, &["archive", "x"]);
    assert!(ok, "{said}\n{}", logs());
    assert!(!data.exists(), "the node copy goes once archived");
    let (ok, said) = owner_w.cli(&admin, &["node", "cordon", &owner]);
    assert!(ok, "{said}");
    wait_for(
        "the other node to see the cordon",
        Duration::from_secs(10),
        logs,
        || {
            other_w
                .api("GET", &format!("/v1/nodes/{owner}"), Some(&admin), None)
                .1["state"]
                == "cordoned"
        },
    );

    let (ok, lines) = join(other_w, "x.test", "returning");
    assert!(ok, "{lines:?}\n{}", logs());
    // Both appliances, the old owner too, see it on the other node.
    wait_for(
        "both to agree where it runs",
        Duration::from_secs(10),
        logs,
        || {
            [&a, &b].iter().all(|w| {
                let s = server_info(w, &admin, "x");
                s["node"] == other && s["state"] == "active"
            })
        },
    );
    assert_eq!(
        std::fs::read(data.join("world/level.dat")).unwrap(),
        b"comes back"
    );
    assert!(
        !owner_w.log().contains("server process started"),
        "{}",
        owner_w.log()
    );
    // Whichever saw first that the owner cannot take it (the joining node, or the owner
    // asked to wake it) placed it.
    assert!(
        logs().contains("placed on another node for its restore"),
        "{}",
        logs()
    );
}

/// Runs `warden run` on `body` (as [`Warden::start`] fills it in) and expects it to refuse
/// to start: it must exit within `limit`, and its log is returned.
fn refused(name: &str, body: &str, limit: Duration) -> String {
    let dir = tempdir(name);
    let text = body
        .replace("{port}", &free_port().to_string())
        .replace("{api}", &free_port().to_string())
        .replace("{metrics}", &free_port().to_string())
        .replace("{dir}", &dir.to_string_lossy());
    let config = dir.join("warden.toml");
    std::fs::write(&config, text).unwrap();
    let mut child = Warden::spawn(&dir, &config, false, "warden.log");
    let until = std::time::Instant::now() + limit;
    let log = || std::fs::read_to_string(dir.join("warden.log")).unwrap_or_default();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "it started:\n{}", log());
            return log();
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A node is refused, with the reason, when it registers an id a live node holds, offers
/// no memory, or advertises an address this machine does not have (edges would send its
/// players nowhere); the live node is untouched.
#[test]
fn a_node_with_a_taken_id_no_capacity_or_a_foreign_address_is_refused() {
    let redis = Redis::start();
    let shared = tempdir("fleet-refusals");
    let a = Warden::start(
        "fleet-refusals-a",
        &config(
            "",
            None,
            &fleet_sections("node-a", redis.port, &shared, "address = \"127.0.0.2\"\n"),
        ),
    );
    let node = |tag: &str, name: &str, keys: &str, limit: u64| {
        let body = config("", None, &fleet_sections(name, redis.port, &shared, keys));
        refused(
            &format!("fleet-refusals-{tag}"),
            &body,
            Duration::from_secs(limit),
        )
    };
    let taken = node("taken", "node-a", "address = \"127.0.0.4\"\n", 60);
    assert!(
        taken.contains("node id 'node-a' is already registered by a live process"),
        "{taken}"
    );
    let empty = node("empty", "node-c", "memory_gb = 0.0\n", 30);
    assert!(empty.contains("a node needs a capacity above 0"), "{empty}");
    let foreign = node("foreign", "node-d", "address = \"192.0.2.1\"\n", 30);
    assert!(
        foreign.contains("node.address `192.0.2.1` is not an address of this machine"),
        "{foreign}"
    );
    let viewer = a.token("viewer");
    let (s, nodes) = a.api("GET", "/v1/nodes", Some(&viewer), None);
    assert_eq!(s, 200, "{nodes}");
    let ids: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert_eq!(ids, ["node-a"], "{nodes}");
    let node_a = &nodes[0];
    assert_eq!(node_a["address"], "127.0.0.2", "{nodes}");
    assert_eq!(node_a["state"], "ready", "{nodes}");
}
