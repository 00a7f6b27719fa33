//! The store is not a single point of failure: two appliances on Redis Sentinel (a real
//! primary, two replicas and three sentinels), the process runtime, real nmp players.
//! The primary is killed -9 while twenty players join a sleeping server through both
//! appliances: the server is started exactly once across the fleet, every player gets in
//! after the failover, and a server that was already running stays reachable through
//! both edges while there is no primary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use warden_tests::*;
use warden_wire::{FrameDecoder, Handshake, Intent, PacketReader, PacketWriter};

/// A managed `backend.js` server whose command first appends a line to `counter`: the
/// number of lines is the number of starts, whichever appliance started it.
fn counted_server(id: &str, port: u16, data: &Path, counter: &Path) -> String {
    std::fs::create_dir_all(data).expect("mkdir");
    format!(
        "{}sleep_after = \"48h\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\n\
         runtime = {{ kind = \"process\", command = [\"sh\", \"-c\", \"echo start >> '{}'; exec node '{}' --version 1.20.4 --port {port}\"], dir = \"{}\" }}\n",
        server(id, &format!("{id}.test"), &format!("127.0.0.1:{port}")),
        counter.display(),
        peers_dir().join("backend.js").display(),
        data.display()
    )
}

fn starts(counter: &Path) -> usize {
    std::fs::read_to_string(counter)
        .unwrap_or_default()
        .lines()
        .count()
}

/// Logs in as a 1.20.4 client through `w` to `host`; the id of the first packet back: the
/// game server's Set Compression (0x03) or Login Success (0x02) once the edge forwarded
/// the login, Warden's Disconnect (0x00) if it refused it.
fn first_login_reply(w: &Warden, host: &str) -> Option<i32> {
    let to = SocketAddr::from(([127, 0, 0, 1], w.port));
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
    let mut out = Handshake {
        protocol: 765,
        address: host.into(),
        port: w.port,
        intent: Intent::Login,
    }
    .encode()
    .to_vec();
    out.extend_from_slice(
        &PacketWriter::new(0x00)
            .string("probe")
            .raw(&[7u8; 16])
            .into_frame(),
    );
    s.write_all(&out).ok()?;
    let body = read_frame(&mut s, &mut FrameDecoder::new(), Duration::from_secs(5))?;
    PacketReader::new(&body).varint().ok()
}

fn join_args(w: &Warden, host: &str, name: &str, count: u32) -> Vec<String> {
    [
        "--port",
        &w.port.to_string(),
        "--version",
        "1.20.4",
        "--server-host",
        host,
        "--count",
        &count.to_string(),
        "--username",
        name,
        "--timeout-ms",
        "60000",
        "--warmup",
        "false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn spawn_join(w: &Warden, host: &str, name: &str, count: u32) -> std::process::Child {
    let args = join_args(w, host, name, count);
    player_spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn killing_the_redis_primary_mid_wake_starts_once_and_everyone_gets_in() {
    // The sentinels wait 3 s for the primary before they fail over: the routing check
    // below surely runs while there is no primary.
    let mut set = SentinelSet::start_with(Duration::from_secs(3));
    let dir = tempdir("store-failover");
    let (sleepy_port, awake_port) = (free_port(), free_port());
    let (sleepy_count, awake_count) = (dir.join("sleepy.starts"), dir.join("awake.starts"));
    let _guards = [
        ServerProcess(dir.join("sleepy")),
        ServerProcess(dir.join("awake")),
    ];
    let body = |name: &str| {
        format!(
            "[store]\nkind = \"redis\"\npath = \"{{dir}}/store\"\n{}failover_wait = \"30s\"\n\
             [archive]\npath = \"{}/archive\"\n[lifecycle]\nappliance = \"{name}\"\nhold = \"50s\"\n{}{}",
            set.store_keys(),
            dir.display(),
            counted_server("sleepy", sleepy_port, &dir.join("sleepy"), &sleepy_count),
            counted_server("awake", awake_port, &dir.join("awake"), &awake_count),
        )
    };
    let a = Warden::start("failover-a", &config("", None, &body("edge-a")));
    let b = Warden::start("failover-b", &config("", None, &body("edge-b")));
    let logs = || format!("A:\n{}\nB:\n{}", a.log(), b.log());

    // A running server, started through A, before anything goes wrong.
    let (ok, lines) = player(
        &join_args(&a, "awake.test", "early", 1)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(ok, "{lines:?}\n{}", logs());
    // B has seen it running too (a login through B, answered by the game server).
    assert!(
        matches!(first_login_reply(&b, "awake.test"), Some(0x02 | 0x03)),
        "{}",
        logs()
    );

    // The primary is killed once the first of twenty joins is waking the sleeping server.
    let pa = spawn_join(&a, "sleepy.test", "A", 10);
    let pb = spawn_join(&b, "sleepy.test", "B", 10);
    wait_for(
        "a join to wake the sleeping server",
        Duration::from_secs(30),
        logs,
        || {
            [&a, &b]
                .iter()
                .any(|w| w.log().contains("join wakes the server server=sleepy"))
        },
    );
    set.kill_primary();
    let killed = Instant::now();

    // No primary and no failover yet: the running server is reachable through both
    // edges. Raw logins answer within milliseconds, surely inside the outage; real
    // players follow.
    let ra = spawn_join(&a, "awake.test", "RA", 3);
    let rb = spawn_join(&b, "awake.test", "RB", 3);
    for i in 0..4 {
        let w = if i % 2 == 0 { &a } else { &b };
        let reply = first_login_reply(w, "awake.test");
        assert!(
            matches!(reply, Some(0x02 | 0x03)),
            "routing stopped: the login got {reply:?} instead of the game server's answer\n{}",
            logs()
        );
    }
    let roles: Vec<_> = set
        .replicas
        .iter()
        .map(|r| redis_query(r.port, &["ROLE"]))
        .collect();
    assert!(
        roles.iter().all(|role| role
            .as_ref()
            .is_ok_and(|r| format!("{r:?}").contains("slave"))),
        "the failover happened before routing was checked ({:?} after the kill): {roles:?}",
        killed.elapsed()
    );
    let outage_checked = killed.elapsed();

    // The held players get in once the store is back.
    let promoted = set.wait_failover(Duration::from_secs(30));
    let failover = killed.elapsed();
    let (ok_a, lines_a) = player_wait(ra);
    let (ok_b, lines_b) = player_wait(rb);
    assert!(ok_a && ok_b, "{lines_a:#?}\n{lines_b:#?}\n{}", logs());
    let (ok_a, lines_a) = player_wait(pa);
    let (ok_b, lines_b) = player_wait(pb);
    let everyone_in = killed.elapsed();
    assert!(ok_a && ok_b, "{lines_a:#?}\n{lines_b:#?}\n{}", logs());
    let in_game = lines_a
        .iter()
        .chain(&lines_b)
        .filter(|l| l["ok"] == true)
        .count();
    assert_eq!(in_game, 20, "{lines_a:#?}\n{lines_b:#?}");
    assert_eq!(
        starts(&sleepy_count),
        1,
        "started more than once:\n{}",
        logs()
    );
    assert_eq!(starts(&awake_count), 1, "{}", logs());
    eprintln!(
        "figures (after the kill): routing checked by {outage_checked:?}; failover to port \
         {promoted} by {failover:?}; all 20 players in by {everyone_in:?}"
    );
}
