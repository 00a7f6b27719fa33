//! Live capacity end to end, time-scaled (one hour is a few seconds): an edge appliance
//! runs the capacity controller against the local fake of the Hetzner Cloud API, whose
//! servers boot real `warden` node processes from the cloud-init user data the controller
//! rendered. The fleet learns from a seeded demand history that a wave comes; the
//! controller buys a node before it, real players join archived servers that land on the
//! new node, and after the wave the node is drained and given back near the end of its
//! billed hour. Also: a leader killed mid-round is replaced without buying twice or
//! leaving an orphan, and cloud faults end in a fallback, never a crash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use parking_lot::Mutex;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_hcloud_fake::{FakeOptions, FakeProcess};
use warden_tests::*;

const TOKEN_ENV: &str = "WARDEN_TEST_HCLOUD_TOKEN";
const TOKEN: &str = "capacity-test-token";
/// The compressed hour: billing, the forecast's hours and the history all use it.
const HOUR_SECS: u64 = 5;
/// Hours in the seeded history (three weeks: enough for the forecast's weekly season).
const SEED_HOURS: u64 = 21 * 24;

fn fake(dir: &Path, faults: Option<Value>) -> FakeProcess {
    FakeProcess::start(FakeOptions {
        token: TOKEN.into(),
        hour_secs: Some(HOUR_SECS as f64),
        boot_delay_ms: Some(1500),
        warden_bin: Some(warden_bin()),
        machines_dir: Some(dir.join("machines")),
        stop_grace_ms: Some(3000),
        faults,
        ..FakeOptions::default()
    })
    .expect("start warden-hcloud-fake")
}

/// The store, archive and lifecycle sections every appliance of the fleet shares.
fn shared(name: &str, redis: u16, dir: &Path, data: &str) -> String {
    format!(
        "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{redis}\"\npath = \"{data}\"\n\
         [archive]\npath = \"{}/archive\"\n[lifecycle]\nappliance = \"{name}\"\nhold = \"60s\"\n",
        dir.display()
    )
}

/// The cloud-init user data template: the node's whole config in write_files. The
/// controller fills `{name}` and `{memory_gb}`; the fake's machine fills `{ipv4}` (its own
/// address) and `{machine_dir}` (its disk).
fn user_data(redis: u16, dir: &Path) -> String {
    let config = format!(
        "[edge]\nlisten = \"{{ipv4}}:25565\"\nupgrade_sock = \"{{machine_dir}}/up.sock\"\n\
         [metrics]\nlisten = \"{{ipv4}}:9100\"\n{}[node]\nroles = [\"node\"]\n\
         address = \"{{ipv4}}\"\nmemory_gb = {{memory_gb}}\n",
        shared("{name}", redis, dir, "{machine_dir}/data")
    );
    let indented: String = config.lines().map(|l| format!("      {l}\n")).collect();
    format!("#cloud-config\nwrite_files:\n  - path: /etc/warden/warden.toml\n    content: |\n{indented}")
}

/// `[capacity]` against the fake: cx22 nodes (4 GB, 2 GB of it for game servers) from the
/// newest snapshot labelled as a node image (the fake's 1001).
fn capacity(fake: &FakeProcess, dir: &Path, extra: &str) -> String {
    format!(
        "[capacity]\nprovider = \"hetzner\"\ntoken_env = \"{TOKEN_ENV}\"\napi_url = \"{}\"\n\
         pool = \"e2e\"\nmin_nodes = 1\nmax_nodes = 3\nquantile = 0.9\ninterval = \"1s\"\n\
         hour = \"{HOUR_SECS}s\"\nlead_time = \"4s\"\ndelete_window = \"2500ms\"\n\
         orphan_grace = \"40s\"\nscale_in_after = \"8s\"\nseed = \"{}\"\n{extra}\
         [capacity.template]\nserver_types = [\"cx22\"]\nlocations = [\"fsn1\", \"nbg1\"]\n\
         image_label = \"warden-node=1\"\nreserve_gb = 2.0\nuser_data = \"{}\"\n",
        fake.url,
        dir.join("seed.csv").display(),
        dir.join("user-data.yaml").display(),
    )
}

/// Writes a history whose daily wave (4 GB, else nothing) starts `wave_in` hours after the
/// current hour and lasts `wave_len` hours.
fn write_seed(dir: &Path, wave_in: u64, wave_len: u64) {
    let now_hour = unix_ms() / (HOUR_SECS * 1000);
    let first = now_hour - SEED_HOURS;
    let wave_start = (now_hour + wave_in) % 24;
    let mut text = String::from("# GB per compressed hour, oldest first\n");
    for h in first..now_hour {
        let into = (h + 24 - wave_start) % 24;
        let gb = if into < wave_len { 4.0 } else { 0.0 };
        text.push_str(&format!("{gb}\n"));
    }
    std::fs::write(dir.join("seed.csv"), text).unwrap();
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The fake's servers (live and deleted) as its state shows them.
fn cloud_servers(fake: &FakeProcess) -> Vec<Value> {
    fake.state()["servers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn live(servers: &[Value]) -> Vec<&Value> {
    servers
        .iter()
        .filter(|s| s["status"] != "deleted")
        .collect()
}

/// The controller's decisions from `/v1/capacity`.
fn decisions(w: &Warden, token: &str) -> Vec<String> {
    w.api("GET", "/v1/capacity", Some(token), None).1["decisions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| d["line"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The `data:` lines of `scaling` events on `w`'s live event stream, as they come.
fn follow_scaling(w: &Warden, token: &str) -> Arc<Mutex<Vec<String>>> {
    let mut sse = TcpStream::connect(w.api_addr()).unwrap();
    write!(
        sse,
        "GET /v1/events/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut scaling = false;
        for line in BufReader::new(sse).lines().map_while(Result::ok) {
            if let Some(name) = line.strip_prefix("event: ") {
                scaling = name == "scaling";
            } else if let Some(data) = line.strip_prefix("data: ") {
                if scaling {
                    sink.lock().push(data.to_string());
                }
            }
        }
    });
    seen
}

/// A 1.20.4 player joining `host` through `w`'s edge, chatting once and leaving.
fn join(w: &Warden, host: &str, name: &str) -> std::process::Child {
    chat_once_spawn(w.port, host, name, 90_000)
}

struct Fleet {
    edge: Warden,
    /// A second appliance running the controller, when asked for (the failover test).
    other: Option<Warden>,
    node0: Warden,
    fake: FakeProcess,
    dir: PathBuf,
    admin: String,
    _servers: Vec<ServerProcess>,
    _redis: Redis,
}

impl Fleet {
    /// Server `id` as the edge's API shows it.
    fn server(&self, id: &str) -> Value {
        self.edge
            .api("GET", &format!("/v1/servers/{id}"), Some(&self.admin), None)
            .1
    }

    fn logs(&self) -> String {
        let mut out = format!(
            "EDGE:\n{}\nNODE-0:\n{}\nFAKE STATE:\n{}\n",
            self.edge.log(),
            self.node0.log(),
            self.fake.state()
        );
        if let Ok(entries) = std::fs::read_dir(self.dir.join("machines")) {
            for e in entries.flatten() {
                let log = std::fs::read_to_string(e.path().join("warden.log"))
                    .or_else(|_| std::fs::read_to_string(e.path().join("stderr.log")))
                    .unwrap_or_default();
                let tail: String = log.lines().rev().take(60).collect::<Vec<_>>().join("\n");
                out.push_str(&format!(
                    "MACHINE {} (last lines, newest first):\n{tail}\n",
                    e.path().display()
                ));
            }
        }
        out
    }
}

/// node-0 (3 GB, not bought: the fleet's floor), an edge with the controller (and another
/// one with `two_controllers`), and `servers` API-defined servers of 1 GB, archived; the
/// seeded wave starts `wave_in` hours from now; the fake starts with `faults`.
fn fleet(
    tag: &str,
    servers: usize,
    wave_in: u64,
    two_controllers: bool,
    faults: Option<Value>,
) -> Fleet {
    std::env::set_var(TOKEN_ENV, TOKEN);
    let redis = Redis::start();
    let dir = tempdir(&format!("capacity-{tag}"));
    let fake = fake(&dir, faults);
    write_seed(&dir, wave_in, 3);
    std::fs::write(dir.join("user-data.yaml"), user_data(redis.port, &dir)).unwrap();
    let node0 = Warden::start(
        &format!("capacity-{tag}-node0"),
        &config(
            "",
            None,
            &(shared("node-0", redis.port, &dir, "{dir}") + "[node]\nmemory_gb = 3.0\n" + API),
        ),
    );
    let edge = Warden::start(
        &format!("capacity-{tag}-edge"),
        &config(
            "",
            None,
            &(shared("edge", redis.port, &dir, "{dir}")
                + "[node]\nroles = [\"edge\"]\n"
                + API
                + &capacity(&fake, &dir, "")),
        ),
    );
    let other = two_controllers.then(|| {
        Warden::start(
            &format!("capacity-{tag}-other"),
            &config(
                "",
                None,
                &(shared("edge-b", redis.port, &dir, "{dir}")
                    + "[node]\nroles = [\"edge\"]\n"
                    + API
                    + &capacity(&fake, &dir, "")),
            ),
        )
    });
    let admin = edge.token("admin");
    let backend = peers_dir().join("backend.js");
    let mut guards = Vec::new();
    for k in 1..=servers {
        let id = format!("s{k}");
        let (port, data) = (free_port(), dir.join(&id));
        guards.push(ServerProcess(data.clone()));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("world.txt"), format!("the world of {id}")).unwrap();
        let spec = json!({
            "id": id, "hosts": [format!("{id}.test")], "backend": format!("127.0.0.1:{port}"),
            "memory_gb": 1.0, "sleep_after_secs": 10, "start_timeout_secs": 60,
            "runtime": {"kind": "process", "dir": data,
                "command": ["node", backend, "--version", "1.20.4", "--host", "0.0.0.0",
                            "--port", port.to_string()]},
        });
        let (status, s) = edge.api("POST", "/v1/servers", Some(&admin), Some(&spec.to_string()));
        assert_eq!(status, 201, "{s}");
    }
    let f = Fleet {
        edge,
        other,
        node0,
        fake,
        dir,
        admin,
        _servers: guards,
        _redis: redis,
    };
    for k in 1..=servers {
        let id = format!("s{k}");
        wait_for(
            "the server to be placed",
            Duration::from_secs(20),
            || f.logs(),
            || f.server(&id)["node"] == "node-0",
        );
        // The owner archives (tokens live in the shared store: the edge's works there).
        let (status, s) = f.node0.api(
            "POST",
            &format!("/v1/servers/{id}/actions/archive"),
            Some(&f.admin),
            Some("{}"),
        );
        assert!(status == 202 || status == 200, "{status} {s}");
    }
    for k in 1..=servers {
        let id = format!("s{k}");
        wait_for(
            "the server to be archived",
            Duration::from_secs(30),
            || f.logs(),
            || f.server(&id)["state"] == "archived",
        );
    }
    f
}

#[test]
fn the_forecast_buys_a_node_before_the_wave_and_gives_it_back_after() {
    // The wave: 4 GB for three hours, starting 8 hours (40 s) from now.
    let f = fleet("wave", 4, 8, false, None);
    let t0 = Instant::now();
    // Decisions reach every appliance's live stream, not only the leader's.
    let streamed = follow_scaling(&f.node0, &f.admin);
    let wave_at = Duration::from_secs(8 * HOUR_SECS);
    // Before the wave, nobody plays; the controller must buy on the forecast alone.
    wait_for(
        "a scale-out on the forecast",
        wave_at,
        || f.logs(),
        || {
            decisions(&f.edge, &f.admin)
                .iter()
                .any(|d| d.starts_with("scale_out: forecast"))
        },
    );
    let bought_after = t0.elapsed();
    wait_for(
        "the bought node to join the fleet",
        wave_at,
        || f.logs(),
        || {
            f.edge
                .api("GET", "/v1/nodes", Some(&f.admin), None)
                .1
                .as_array()
                .is_some_and(|a| {
                    a.iter().any(|n| {
                        n["id"].as_str().is_some_and(|i| i.starts_with("e2e-")) && n["up"] == true
                    })
                })
        },
    );
    let joined_after = t0.elapsed();
    // Players come with the wave, not before.
    if let Some(rest) = wave_at.checked_sub(t0.elapsed()) {
        std::thread::sleep(rest);
    }
    let players: Vec<_> = (1..=4)
        .map(|k| join(&f.edge, &format!("s{k}.test"), &format!("p{k}")))
        .collect();
    for p in players {
        let (ok, lines) = player_wait(p);
        assert!(ok, "{lines:?}\n{}", f.logs());
    }
    let waits = f.node0.metric("warden_capacity_waits_total");
    let servers = cloud_servers(&f.fake);
    let bought = live(&servers);
    assert_eq!(
        bought.len(),
        1,
        "one node bought for the wave: {servers:?}\n{}",
        f.logs()
    );
    let node = bought[0]["name"].as_str().unwrap().to_string();
    let owners: Vec<Value> = (1..=4)
        .map(|k| f.server(&format!("s{k}"))["node"].clone())
        .collect();
    // node-0 holds 3 of the wave's 4 GB: at least one restore lands on the bought node,
    // and the fleet (3 + 2 GB) stays under the reactive rule's 85 % (no second node).
    assert!(
        owners.iter().any(|o| *o == node.as_str())
            && owners.iter().all(|o| *o == node.as_str() || *o == "node-0"),
        "the restored servers run on node-0 and the bought node: {owners:?}"
    );
    assert_eq!(waits, 0.0, "no join waited for room\n{}", f.logs());

    // After the wave: the node is drained, emptied and given back; its servers live on.
    wait_for(
        "the bought node to be given back",
        Duration::from_secs(120),
        || f.logs(),
        || live(&cloud_servers(&f.fake)).is_empty(),
    );
    wait_for(
        "the stream to show the deletion",
        Duration::from_secs(10),
        || f.logs(),
        || {
            streamed
                .lock()
                .iter()
                .any(|d| d.contains("delete: drained and empty"))
        },
    );
    // The decision is recorded once the cloud confirmed the delete: read it after the stream.
    let lines = decisions(&f.edge, &f.admin);
    assert!(lines.iter().any(|d| d.starts_with("drain:")), "{lines:?}");
    let events = streamed.lock().clone();
    assert!(
        events
            .iter()
            .any(|d| d.contains("\"kind\":\"scaling\"") && d.contains("scale_out: forecast")),
        "{events:?}"
    );
    assert!(
        lines
            .iter()
            .any(|d| d.starts_with("delete: drained and empty")),
        "{lines:?}"
    );
    for k in 1..=4 {
        let s = f.server(&format!("s{k}"));
        assert_eq!(s["node"], "node-0", "every server is back on node-0: {s}");
    }
    // A server that ran on the given-back node still has its world: its player gets in.
    let (ok, lines) = player_wait(join(&f.edge, "s3.test", "again"));
    assert!(ok, "{lines:?}\n{}", f.logs());

    // Billing: every started hour, as Hetzner bills; the controller's cost counter agrees.
    let state = f.fake.state();
    assert_eq!(
        state["creates"][0]["image"], "1001",
        "the node booted the snapshot found by its label"
    );
    let s0 = &state["servers"][0];
    let billed = s0["billed_hours"].as_u64().unwrap_or(0);
    let lived = (s0["deleted_ms"].as_u64().unwrap_or(0) - s0["created_ms"].as_u64().unwrap_or(0))
        as f64
        / 1000.0;
    assert!(
        billed >= 1 && billed as f64 >= lived / HOUR_SECS as f64,
        "{state}"
    );
    let cost = f.edge.metric("warden_cloud_cost_euros_total");
    assert!(
        cost > 0.0,
        "the cost counter counted the billed hours\n{}",
        f.edge.metrics()
    );
    let total = t0.elapsed().as_secs_f64();
    eprintln!(
        "capacity e2e: bought at {:.1} s, node up at {:.1} s, wave at {:.0} s; \
         waiting joins {waits}; billed hours {billed} (lived {lived:.1} s); \
         node-hours {:.0} (node-0 all along + the bought one) vs a static fleet of 2 nodes \
         over the run {:.0}",
        bought_after.as_secs_f64(),
        joined_after.as_secs_f64(),
        wave_at.as_secs_f64(),
        (total / HOUR_SECS as f64).ceil() + billed as f64,
        2.0 * (total / HOUR_SECS as f64).ceil(),
    );
}

/// Whether every live server of the pool is a node of the fleet (none orphaned).
fn all_joined(f: &Fleet, w: &Warden) -> bool {
    let nodes = w.api("GET", "/v1/nodes", Some(&f.admin), None).1;
    let ids: Vec<&str> = nodes
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["id"].as_str()).collect())
        .unwrap_or_default();
    live(&cloud_servers(&f.fake))
        .iter()
        .all(|s| s["name"].as_str().is_some_and(|n| ids.contains(&n)))
}

#[test]
fn a_leader_killed_while_buying_is_replaced_without_buying_twice() {
    // Create actions stay running for 16 polls (8 s): the leader is killed while it waits.
    let mut f = fleet("failover", 0, 2, true, Some(json!({"action_polls": 16})));
    let other = f.other.take().unwrap();
    let admin = f.admin.clone();
    wait_for(
        "the leader to buy for the wave",
        Duration::from_secs(40),
        || f.logs(),
        || {
            f.fake.state()["creates"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
        },
    );
    assert_eq!(
        f.edge.metric("warden_capacity_leader"),
        1.0,
        "the first edge leads"
    );
    assert_eq!(
        other.metric("warden_capacity_leader"),
        0.0,
        "one leader at a time"
    );
    f.edge.child.kill().unwrap();
    let killed = Instant::now();
    wait_for(
        "the other appliance to lead",
        Duration::from_secs(30),
        || other.log(),
        || other.api("GET", "/v1/capacity", Some(&admin), None).1["leader"] == "edge-b",
    );
    let took_over = killed.elapsed();
    // The server the dead leader bought boots and joins; nothing is bought twice.
    wait_for(
        "the bought node to join",
        Duration::from_secs(30),
        || other.log(),
        || live(&cloud_servers(&f.fake)).len() == 1 && all_joined(&f, &other),
    );
    std::thread::sleep(Duration::from_secs(2 * HOUR_SECS));
    let state = f.fake.state();
    assert_eq!(
        state["creates"].as_array().map(Vec::len),
        Some(1),
        "bought once: {state}\n{}",
        other.log()
    );
    assert!(all_joined(&f, &other), "no orphan: {state}");
    eprintln!(
        "capacity failover: the other appliance led {:.1} s after the kill",
        took_over.as_secs_f64()
    );
    drop(other);
}

#[test]
fn cloud_faults_end_in_a_fallback_not_a_crash() {
    // fsn1 has no cx22 (412); the first create is rate limited (429, retried after the
    // reset), the next clashes on its name (409: a new name next round); the first action
    // of the rest fails (the half-made server is deleted).
    let faults = json!({
        "unavailable": [["cx22", "fsn1", 412]],
        "script": [["POST", "/v1/servers", 429, "rate_limit_exceeded"],
                   ["POST", "/v1/servers", 409, "uniqueness_error"]],
    });
    let f = fleet("faults", 0, 2, false, Some(faults));
    let admin = f.admin.clone();
    wait_for(
        "a node bought in nbg1 to join",
        Duration::from_secs(60),
        || f.logs(),
        || {
            let servers = cloud_servers(&f.fake);
            let up = live(&servers);
            up.len() == 1 && up[0]["location"] == "nbg1" && all_joined(&f, &f.edge)
        },
    );
    wait_for(
        "the purchase in nbg1 to be reported",
        Duration::from_secs(10),
        || f.logs(),
        || {
            decisions(&f.edge, &admin)
                .iter()
                .any(|d| d.contains("in nbg1"))
        },
    );
    let lines = decisions(&f.edge, &admin);
    assert!(
        lines.iter().any(|d| d.starts_with("scale_out failed")),
        "the name clash is reported: {lines:?}"
    );
    let state = f.fake.state();
    assert!(
        state["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["location"] == "nbg1"),
        "nothing was made in fsn1: {state}"
    );
    assert_eq!(state["rate_limited"], 1, "{state}");
    // Still alive and answering after all that; the CLI prints the view.
    assert_eq!(f.edge.api("GET", "/v1/capacity", Some(&admin), None).0, 200);
    let (ok, out) = f.edge.cli(&admin, &["capacity"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("leader edge (hetzner)") && out.contains("in nbg1"),
        "{out}"
    );
}
