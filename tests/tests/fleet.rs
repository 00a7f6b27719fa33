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
    format!(
        "{}sleep_after = \"{sleep_after}\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\n\
         runtime = {{ kind = \"process\", command = [\"node\", \"{}\", \"--version\", \"1.20.4\", \
         \"--host\", \"{ip}\", \"--port\", \"{port}\"], dir = \"{}\" }}\n",
        server(id, &format!("{id}.test"), &format!("{ip}:{port}")),
        peers_dir().join("backend.js").display(),
        data.display()
    )
}

/// A 1.20.4 player joining `host` through `w`'s edge, chatting once and leaving.
fn join(w: &Warden, host: &str, name: &str) -> (bool, Vec<Value>) {
    player(&[
        "--port",
        &w.port.to_string(),
        "--version",
        "1.20.4",
        "--server-host",
        host,
        "--username",
        name,
        "--chat",
        "hi",
        "--timeout-ms",
        "60000",
    ])
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

/// The bug this fixes: two appliances both defining `world` woke it in whichever directory
/// the joining player's appliance had. Now the node that created the record owns it; a join
/// at the other appliance, before and after the server slept, is forwarded to the owner's
/// address and wakes it there. The other appliance never starts it.
#[test]
fn one_owner_runs_a_server_both_appliances_define_and_the_other_forwards() {
    let redis = Redis::start();
    let dir = tempdir("fleet-own");
    let (data_a, data_b) = (dir.join("world-a"), dir.join("world-b"));
    let port = free_port();
    let _guards = (ServerProcess(data_a.clone()), ServerProcess(data_b.clone()));
    // Each appliance has its own copy of the definition, on its own address.
    let node = |name: &str, ip: &str, data: &Path| {
        config(
            "",
            None,
            &(fleet_sections(name, redis.port, &dir, &format!("address = \"{ip}\"\n"))
                + &process_server("world", ip, port, data, "3s")),
        )
    };
    let a = Warden::start("fleet-own-a", &node("node-a", "127.0.0.2", &data_a));
    let b = Warden::start("fleet-own-b", &node("node-b", "127.0.0.3", &data_b));
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
        let (ok, lines) = join(&b, "world.test", &format!("viaB{round}"));
        assert!(ok, "round {round}: {lines:?}\n{}", logs());
        assert_eq!(joins_in(&data_a), round + 1, "{}", logs());
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
