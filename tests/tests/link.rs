//! The edge↔node QUIC link through the real binaries: a CA and certificates made with
//! `warden ca init` and `warden cert issue`; node A (127.0.0.2) owns `world` and accepts
//! links; appliance B (127.0.0.3) is where the player connects. A real nmp player joining
//! at B is carried over the link to A, whose backend learns the player's real address from
//! the PROXY v2 header A writes; the bytes show on both ends' link metrics, none fell back
//! to TCP. Wakes and sleeps asked at B travel on the link's control stream, and B answers
//! status pings from what A told it there. A node whose link cannot be reached still gets
//! its players over TCP, counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use warden_tests::*;

/// One test of this file at a time: the timing test compares two paths, and the others'
/// appliances and players would only add noise to it.
fn alone() -> parking_lot::MutexGuard<'static, ()> {
    static ONE: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    ONE.lock()
}

/// `warden ARGS`, which must succeed; its stdout.
fn warden(args: &[&str]) -> String {
    let out = Command::new(warden_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "warden {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fleet CA in `dir/ca` and a node certificate for each of `nodes` in `dir/ID`.
fn certificates(dir: &Path, nodes: &[&str]) {
    let ca = dir.join("ca");
    warden(&["ca", "init", ca.to_str().unwrap(), "--name", "test"]);
    for id in nodes {
        let out = dir.join(id);
        let said = warden(&[
            "cert",
            "issue",
            "--ca",
            ca.to_str().unwrap(),
            "--node",
            id,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(said.contains(&format!("{id}.node.warden")), "{said}");
    }
}

/// `[link]` of appliance `id` with its certificates from `certs/ID`; `listen` for a node
/// that accepts links.
fn link_section(certs: &Path, id: &str, listen: Option<&str>) -> String {
    let d = certs.join(id);
    format!(
        "[link]\n{}ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\ncrl = \"{}\"\n",
        listen.map_or(String::new(), |l| format!("listen = \"{l}\"\n")),
        d.join("ca.crt").display(),
        d.join(format!("{id}.crt")).display(),
        d.join(format!("{id}.key")).display(),
        d.join("crl.pem").display(),
    )
}

/// Appliance `id` at `ip` on the shared Redis, defining `world` (backend.js on
/// `a_ip:port`, PROXY v2 expected) in its own data directory.
fn appliance(
    id: &str,
    ip: &str,
    redis: u16,
    data: &Path,
    port: u16,
    node: &str,
    link: &str,
) -> String {
    let server = format!(
        "{}proxy_protocol = true\nsleep_after = \"1h\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\n\
         runtime = {{ kind = \"process\", command = [\"node\", \"{}\", \"--version\", \"1.20.4\", \
         \"--host\", \"127.0.0.2\", \"--port\", \"{port}\", \"--proxy-protocol\", \"true\"], dir = \"{}\" }}\n",
        server("world", "world.test", &format!("127.0.0.2:{port}")),
        peers_dir().join("backend.js").display(),
        data.display()
    );
    config(
        "",
        None,
        &format!(
            "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{redis}\"\npath = \"{{dir}}\"\n\
             [lifecycle]\nappliance = \"{id}\"\nhold = \"50s\"\n\
             [node]\naddress = \"{ip}\"\n{node}\n{link}{API}{server}"
        ),
    )
}

/// `player.js` arguments for a 1.20.4 player `name` joining `world.test` through `port`,
/// then `extra`.
fn player_args<'a>(port: &'a str, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--port",
        port,
        "--version",
        "1.20.4",
        "--server-host",
        "world.test",
        "--username",
        name,
        "--timeout-ms",
        "60000",
    ];
    args.extend_from_slice(extra);
    args
}

fn join(w: &Warden, name: &str) -> (bool, Vec<Value>) {
    let port = w.port.to_string();
    player(&player_args(&port, name, &["--chat", "over the link"]))
}

/// The `real` address the backend logged for `name`'s login.
fn real_address(data: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(data.join("warden-server.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "login" && e["username"] == name)
        .and_then(|e| e["real"].as_str().map(str::to_string))
}

/// Node A (127.0.0.2, owns `world`, accepts links on a UDP port, `a_extra` more `[node]`
/// keys) and appliance B (127.0.0.3, dials links), each with its own copy of `world`, on
/// one Redis; A starts first, so it owns `world`.
struct Pair {
    a: Warden,
    b: Warden,
    data_a: std::path::PathBuf,
    data_b: std::path::PathBuf,
    udp: u16,
    _guards: (ServerProcess, ServerProcess),
    _redis: Redis,
}

impl Pair {
    fn start(tag: &str, a_extra: &str) -> Pair {
        let redis = Redis::start();
        let dir = tempdir(&format!("link-{tag}"));
        certificates(&dir, &["node-a", "node-b"]);
        let (data_a, data_b) = (dir.join("world-a"), dir.join("world-b"));
        let guards = (ServerProcess(data_a.clone()), ServerProcess(data_b.clone()));
        let (port, udp) = (free_port(), free_port());
        let a = Warden::start(
            &format!("link-{tag}-a"),
            &appliance(
                "node-a",
                "127.0.0.2",
                redis.port,
                &data_a,
                port,
                &format!("link = \"quic\"\n{a_extra}"),
                &link_section(&dir, "node-a", Some(&format!("127.0.0.2:{udp}"))),
            ),
        );
        let b = Warden::start(
            &format!("link-{tag}-b"),
            &appliance(
                "node-b",
                "127.0.0.3",
                redis.port,
                &data_b,
                port,
                "",
                &link_section(&dir, "node-b", None),
            ),
        );
        wait_for(
            "B's warm link to node-a",
            Duration::from_secs(20),
            || format!("A:\n{}\nB:\n{}", a.log(), b.log()),
            || b.metric("warden_link_up") == 1.0,
        );
        Pair {
            a,
            b,
            data_a,
            data_b,
            udp,
            _guards: guards,
            _redis: redis,
        }
    }
}

#[test]
fn a_player_joins_through_the_quic_link_with_the_real_address() {
    let _alone = alone();
    let pair = Pair::start("join", "");
    let (a, b, udp) = (&pair.a, &pair.b, pair.udp);
    let (data_a, data_b) = (&pair.data_a, &pair.data_b);
    let logs = || format!("A:\n{}\nB:\n{}", a.log(), b.log());
    let (s, nodes) = b.api("GET", "/v1/nodes/node-a", Some(&b.token("viewer")), None);
    assert_eq!(s, 200, "{nodes}");
    assert_eq!(nodes["link_port"], udp, "{nodes}");

    let (ok, lines) = join(b, "linked");
    assert!(ok, "{lines:?}\n{}", logs());
    assert!(
        lines.iter().any(|l| l["echo"] == "echo:over the link"),
        "it played: {lines:?}"
    );
    // The backend on A saw the player's own address, as B saw it, through A's PROXY v2
    // header: the address crossed the link.
    let real =
        real_address(data_a, "linked").unwrap_or_else(|| panic!("no real address\n{}", logs()));
    assert!(
        b.log().contains(&format!("peer={real}")),
        "{real} is not the player B saw\n{}",
        b.log()
    );
    assert!(
        !data_b.join("warden-server.log").exists(),
        "B started its own copy"
    );
    // Over the link, not around it.
    let to_node = b.metric("warden_link_bytes_total{direction=\"to_node\",node=\"node-a\"}");
    let from_node = b.metric("warden_link_bytes_total{direction=\"from_node\",node=\"node-a\"}");
    assert!(to_node > 0.0 && from_node > to_node, "{}", b.metrics());
    assert_eq!(
        b.metric("warden_link_fallbacks_total"),
        0.0,
        "{}",
        b.metrics()
    );
    assert!(
        a.metric("warden_link_bytes_total") >= to_node + from_node,
        "{}",
        a.metrics()
    );
    assert_eq!(a.metric("warden_link_handshake_failures_total"), 0.0);

    // The wake crossed on the link's control stream, taken at once: not through the store.
    let wakes = "warden_link_requests_total{kind=\"wake\",node=\"node-a\",result=\"taken\"}";
    assert_eq!(b.metric(wakes), 1.0, "{}", b.metrics());
    assert!(
        a.log().contains("woken at another appliance's request"),
        "{}",
        logs()
    );
    // B answers pings from what A told it: the server's own status while it is up...
    let from_link = "warden_status_cache_total{result=\"link\"}";
    wait_for(
        "B's ping to show the server's own status, as A tells it",
        Duration::from_secs(10),
        logs,
        || {
            let said = mcstatus(&["--addr", &b.addr().to_string(), "--host", "world.test"]);
            said[0]["ok"] == true && said[0]["version_name"] == "1.20.4"
        },
    );
    assert!(b.metric(from_link) >= 1.0, "{}", b.metrics());
    // ...and a sleep asked at B, which does not own `world`, is done by A.
    let (ok, said) = b.cli(&b.token("operator"), &["sleep", "world", "--force"]);
    assert!(ok, "{said}\n{}", logs());
    let sleeps = "warden_link_requests_total{kind=\"sleep\",node=\"node-a\",result=\"taken\"}";
    assert_eq!(b.metric(sleeps), 1.0, "{}", b.metrics());
    wait_for(
        "B's pings to show world asleep, as A tells it",
        Duration::from_secs(30),
        logs,
        || motd(&b.addr().to_string(), "world.test").contains("Sleeping"),
    );
    let (_, view) = a.api("GET", "/v1/servers/world", Some(&a.token("viewer")), None);
    assert_eq!(view["state"], "sleeping", "{view}");
}

/// Handshake + Login Start for `world.test` from `name` (1.20.4).
fn login_bytes(name: &str) -> Vec<u8> {
    use warden_wire::{Handshake, Intent, PacketWriter};
    let hs = Handshake {
        protocol: 765,
        address: "world.test".into(),
        port: 25565,
        intent: Intent::Login,
    }
    .encode();
    let login = PacketWriter::new(0)
        .string(name)
        .raw(&[7u8; 16])
        .into_frame();
    [hs.to_vec(), login.to_vec()].concat()
}

/// Time from sending a login through `edge` until the backend's first byte arrives.
fn first_byte(edge: std::net::SocketAddr, name: &str) -> Duration {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(edge).unwrap();
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = std::time::Instant::now();
    c.write_all(&login_bytes(name)).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(c.read(&mut b).unwrap_or(0), 1, "no answer through {edge}");
    start.elapsed()
}

/// The best of several tries: what the path itself costs, once the noise of a busy
/// machine (which only ever adds) is left out.
fn best(v: &[Duration]) -> Duration {
    v.iter().copied().min().unwrap_or_default()
}

/// The point of the link: edges far from the node. With 50 ms each way between the edges
/// and node A (delaying relays, as `netem` would), a login through an edge with a warm
/// link reaches the backend at least 0.8 round trips sooner than through an edge that
/// opens a TCP connection across the same delay for each player (best of 15 alternating
/// tries each; a ratio of the measured gain to the configured round trip, never an
/// absolute time). With 1 % of the link's datagrams dropped, players still join and play.
#[test]
fn a_warm_link_saves_the_round_trip_of_a_new_connection_and_survives_loss() {
    const ONE_WAY: Duration = Duration::from_millis(50);
    let _alone = alone();
    let redis = Redis::start();
    let dir = tempdir("link-rtt");
    certificates(&dir, &["node-a", "node-b"]);
    let data = |n: &str| dir.join(format!("world-{n}"));
    let _guards = (
        ServerProcess(data("a")),
        ServerProcess(data("b")),
        ServerProcess(data("c")),
    );
    let (port, udp) = (free_port(), free_port());
    // Edges reach A at 127.0.0.4: through the relays.
    let _tcp = warden_tests::delay::tcp(
        ([127, 0, 0, 4], port).into(),
        ([127, 0, 0, 2], port).into(),
        ONE_WAY,
    );
    let _udp = warden_tests::delay::udp(
        ([127, 0, 0, 4], udp).into(),
        ([127, 0, 0, 2], udp).into(),
        ONE_WAY,
        0.0,
    );
    let a = Warden::start(
        "link-rtt-a",
        &appliance(
            "node-a",
            "127.0.0.4",
            redis.port,
            &data("a"),
            port,
            "link = \"quic\"\n",
            &link_section(&dir, "node-a", Some(&format!("127.0.0.2:{udp}"))),
        ),
    );
    let (ok, said) = a.cli(&a.token("operator"), &["wake", "world"]);
    assert!(ok, "{said}\n{}", a.log());
    let linked = Warden::start(
        "link-rtt-b",
        &appliance(
            "node-b",
            "127.0.0.3",
            redis.port,
            &data("b"),
            port,
            "",
            &link_section(&dir, "node-b", None),
        ),
    );
    let plain = Warden::start(
        "link-rtt-c",
        &appliance("node-c", "127.0.0.5", redis.port, &data("c"), port, "", ""),
    );
    let logs = || format!("A:\n{}\nB:\n{}\nC:\n{}", a.log(), linked.log(), plain.log());
    wait_for(
        "B's warm link to node-a",
        Duration::from_secs(20),
        logs,
        || linked.metric("warden_link_up") == 1.0,
    );
    // Both paths once, untimed (C learns the owner's address, nmp compiles its codecs).
    first_byte(linked.addr(), "warm1");
    first_byte(plain.addr(), "warm2");
    let (mut over_link, mut over_tcp) = (Vec::new(), Vec::new());
    for i in 0..15 {
        over_link.push(first_byte(linked.addr(), &format!("l{i}")));
        over_tcp.push(first_byte(plain.addr(), &format!("t{i}")));
    }
    let (l, t) = (best(&over_link), best(&over_tcp));
    let rtt = ONE_WAY * 2;
    let gained = t.saturating_sub(l).as_secs_f64() / rtt.as_secs_f64();
    println!(
        "first byte: link {l:?}, tcp {t:?}, gained {gained:.2} RTT ({over_link:?} / {over_tcp:?})"
    );
    assert!(
        gained >= 0.8,
        "the link gained {gained:.2} round trips: link {over_link:?}, tcp {over_tcp:?}"
    );
    assert_eq!(linked.metric("warden_link_fallbacks_total"), 0.0);
    assert_eq!(plain.metric("warden_link_bytes_total"), 0.0);

    // Status pings: B answers from what node-a told it on the link's control stream, and
    // nothing crosses the long path; C, without a link, asks the server across it. Both
    // show the server's own status.
    let ping = |w: &Warden| mcstatus(&["--addr", &w.addr().to_string(), "--host", "world.test"]);
    let from_link = "warden_status_cache_total{result=\"link\"}";
    wait_for(
        "node-a to tell B of world",
        Duration::from_secs(20),
        logs,
        || {
            ping(&linked);
            linked.metric(from_link) >= 1.0
        },
    );
    let (crossed, answered) = (_tcp.connections(), linked.metric(from_link));
    let mut via_link = Vec::new();
    for _ in 0..5 {
        via_link = ping(&linked);
        assert_eq!(via_link[0]["ok"], true, "{via_link:?}");
        assert_eq!(via_link[0]["version_name"], "1.20.4", "{via_link:?}");
    }
    assert_eq!(
        _tcp.connections(),
        crossed,
        "B's pings crossed the long path"
    );
    assert_eq!(
        linked.metric(from_link),
        answered + 5.0,
        "{}",
        linked.metrics()
    );
    let via_tcp = ping(&plain);
    assert_eq!(
        via_link[0]["motd"], via_tcp[0]["motd"],
        "{via_link:?} / {via_tcp:?}"
    );
    assert!(
        _tcp.connections() > crossed,
        "C's ping asks the server across"
    );

    // 1 % of datagrams lost: players through the link still join and play.
    _udp.set_loss(0.01);
    let players: Vec<_> = (0..4)
        .map(|i| {
            let (port, name) = (linked.port.to_string(), format!("lossy{i}"));
            player_spawn(&player_args(
                &port,
                &name,
                &["--chat", "through loss", "--hold-ms", "3000"],
            ))
        })
        .collect();
    for p in players {
        let (ok, lines) = player_wait(p);
        assert!(ok, "{lines:?}\n{}", logs());
    }
    assert_eq!(linked.metric("warden_link_fallbacks_total"), 0.0);
}

fn held(w: &Warden, name: &str) -> std::process::Child {
    let port = w.port.to_string();
    player_spawn(&player_args(&port, name, &["--hold-ms", "120000"]))
}

fn backend_saw(data: &Path, event: &str, name: &str) -> bool {
    std::fs::read_to_string(data.join("warden-server.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|e| e["event"] == event && e["username"] == name)
}

/// When an end of the link dies. The node killed (`kill -9`): the edge notices, players
/// who join meanwhile go over TCP (counted) instead of failing; the node back, the link
/// comes back by itself and carries new players again. The edge killed: the node closes
/// that edge's streams and their backend sockets (the backend sees the player leave);
/// nothing stays open on the node.
#[test]
fn the_link_recovers_from_a_dead_node_and_a_dead_edge_leaks_nothing() {
    let _alone = alone();
    let pair = Pair::start("fail", "recover = false\n");
    // The rest of the pair (its Redis, the game servers' guards) lives until the end.
    let Pair {
        mut a, b, data_a, ..
    } = pair;
    let logs = || format!("A:\n{}\nB:\n{}", a.log(), b.log());
    let (ok, lines) = join(&b, "first");
    assert!(ok, "{lines:?}\n{}", logs());
    let mut caught = held(&b, "caught");
    // Its lines as they come (the first says it is in the game).
    let said = {
        use std::io::BufRead;
        let (tx, rx) = std::sync::mpsc::channel::<Value>();
        let out = caught.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        rx
    };
    let first = said.recv_timeout(Duration::from_secs(90)).unwrap();
    assert_eq!(first["ok"], true, "{first}\n{}", logs());

    // The node dies; the edge notices within the link's idle timeout, and the player who
    // was in the game is disconnected then, not left hanging.
    let killed = std::time::Instant::now();
    a.signal(9);
    wait_for(
        "B to notice node-a's link is gone",
        Duration::from_secs(40),
        || b.log(),
        || b.metric("warden_link_up") == 0.0,
    );
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while caught.try_wait().unwrap().is_none() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let ended = caught.try_wait().unwrap().is_some();
    println!(
        "the player was disconnected {:?} after the node died",
        killed.elapsed()
    );
    let _ = caught.kill();
    let _ = caught.wait();
    let lines: Vec<Value> = said.try_iter().collect();
    assert!(
        ended,
        "the player is still connected: {lines:?}\n{}",
        b.log()
    );
    assert!(
        lines
            .iter()
            .any(|l| l["ok"] == false && l["phase"] == "hold"),
        "the player's game ended early: {lines:?}"
    );
    // Its game server still runs: a player joining now gets there over TCP.
    let (ok, lines) = join(&b, "meanwhile");
    assert!(ok, "{lines:?}\n{}", b.log());
    assert!(
        b.metric("warden_link_fallbacks_total") >= 1.0,
        "{}",
        b.metrics()
    );

    a.crash_and_restart("warden-2.log");
    wait_for(
        "the link to come back by itself",
        Duration::from_secs(60),
        || format!("A:\n{}\nB:\n{}", a.log_named("warden-2.log"), b.log()),
        || b.metric("warden_link_up") == 1.0,
    );
    assert!(
        b.metric("warden_link_reconnects_total") >= 1.0,
        "{}",
        b.metrics()
    );
    let fallbacks = b.metric("warden_link_fallbacks_total");
    let (ok, lines) = join(&b, "after");
    assert!(ok, "{lines:?}\n{}", b.log());
    assert_eq!(
        b.metric("warden_link_fallbacks_total"),
        fallbacks,
        "over the link again"
    );

    // The edge dies with a player on the link: the node ends that stream and its backend
    // socket, so the backend sees the player leave.
    let mut p = held(&b, "stranded");
    wait_for(
        "the held player on the node's end of the link",
        Duration::from_secs(60),
        || a.log_named("warden-2.log"),
        || a.metric("warden_link_streams") == 1.0,
    );
    b.signal(9);
    wait_for(
        "node-a to close the dead edge's stream",
        Duration::from_secs(60),
        || a.log_named("warden-2.log"),
        || a.metric("warden_link_streams") == 0.0 && backend_saw(&data_a, "disconnect", "stranded"),
    );
    let _ = p.kill();
    let _ = p.wait();
}
