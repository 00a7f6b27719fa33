//! Issue 12, finding 10: wakes cost money, so a scripted client must not cause one. A
//! 1.20.5+ client wakes a sleeping server only after it answered the anteroom's first
//! keep-alive, and players' wakes spend from a per-network budget: past it, clients of that
//! /24 are told so at login (through the anteroom and the plain hold alike) while a player
//! from another /24 still wakes the server.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use warden_tests::*;
use warden_wire::{FrameDecoder, Handshake, Intent, PacketReader, PacketWriter};

/// 1.21.4: held in the anteroom. 1.20.4: older, held by the plain hold.
const ANTEROOM: i32 = 769;
const OLDER: i32 = 765;

/// A managed server running the nmp 1.21.4 backend on `port`, asleep until a join.
fn sleeper(id: &str, port: u16, dir: &std::path::Path) -> String {
    node_server(id, &format!("{id}.wake.test"), port, &dir.join(id), "1h")
        .replace("\"1.20.4\"", "\"1.21.4\"")
}

/// Connects from `from` and sends handshake + Login Start for `host` as `protocol`.
fn login(from: Ipv4Addr, to: SocketAddr, host: &str, protocol: i32) -> TcpStream {
    let mut s = connect_from(from, to, Duration::from_secs(2)).expect("connect");
    let mut out = Handshake {
        protocol,
        address: host.into(),
        port: to.port(),
        intent: Intent::Login,
    }
    .encode()
    .to_vec();
    out.extend_from_slice(
        &PacketWriter::new(0x00)
            .string("bot")
            .raw(&[7u8; 16])
            .into_frame(),
    );
    s.write_all(&out).expect("send login");
    s
}

/// The login Disconnect's text, if the next packet is one.
fn disconnect_text(s: &mut TcpStream) -> Option<String> {
    let body = read_frame(s, &mut FrameDecoder::new(), Duration::from_secs(5))?;
    let mut r = PacketReader::new(&body);
    (r.varint().ok()? == 0x00).then(|| r.string(32767).ok().map(str::to_owned))?
}

fn state(w: &Warden, id: &str, state: &str) -> f64 {
    w.metric(&format!(
        "warden_server_state{{server=\"{id}\",state=\"{state}\"}}"
    ))
}

fn requests(w: &Warden, result: &str) -> f64 {
    w.metric(&format!(
        "warden_wake_requests_total{{cause=\"player\",result=\"{result}\"}}"
    ))
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A real nmp 1.21.4 player (from 127.0.0.1) joins `host`, waits in the anteroom and plays.
fn real_player_joins(w: &Warden, host: &str) {
    let (ok, lines) = player(&[
        "--port",
        &w.port.to_string(),
        "--version",
        "1.21.4",
        "--server-host",
        host,
        "--chat",
        "hello",
        "--timeout-ms",
        "60000",
    ]);
    assert!(ok, "{lines:?}\n{}", w.log());
    assert_eq!(lines.last().map(|l| l["transfers"].clone()), Some(1.into()));
}

#[test]
fn a_client_that_never_answers_the_keepalive_wakes_nothing() {
    let dir = tempdir("hardening-wake-proof");
    let port = free_port();
    let _server = ServerProcess(dir.join("s"));
    let cfg = config("", None, &(stores_in(&dir) + &sleeper("s", port, &dir)));
    let warden = Warden::start("hardening-wake-proof", &cfg);
    wait_for(
        "s asleep",
        Duration::from_secs(10),
        || warden.log(),
        || state(&warden, "s", "sleeping") == 1.0,
    );

    // Handshake, Login Start, Login Success, Login Acknowledged: then silence, with the
    // keep-alive unanswered.
    let mut bot = login(
        Ipv4Addr::new(127, 0, 3, 1),
        warden.addr(),
        "s.wake.test",
        ANTEROOM,
    );
    let mut dec = FrameDecoder::new();
    let success = read_frame(&mut bot, &mut dec, Duration::from_secs(5)).expect("login success");
    assert_eq!(success.first(), Some(&0x02), "{}", warden.log());
    bot.write_all(&PacketWriter::new(0x03).into_frame())
        .expect("login ack");
    let keepalive = read_frame(&mut bot, &mut dec, Duration::from_secs(5)).expect("keep-alive");
    assert_eq!(keepalive.first(), Some(&0x04));
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(4) {
        assert!(
            !listening(port),
            "the bot woke the server\n{}",
            warden.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(state(&warden, "s", "sleeping"), 1.0, "{}", warden.log());
    assert_eq!(requests(&warden, "started"), 0.0, "{}", warden.log());
    drop(bot);
    wait_for(
        "the bot counted",
        Duration::from_secs(10),
        || warden.log(),
        || requests(&warden, "unproven") == 1.0,
    );
    assert!(!listening(port));

    // A real client answers the keep-alive: it wakes the server and plays.
    real_player_joins(&warden, "s.wake.test");
    assert_eq!(requests(&warden, "started"), 1.0, "{}", warden.log());
}

#[test]
fn a_network_past_its_wake_budget_is_told_while_others_still_wake() {
    let dir = tempdir("hardening-wake-budget");
    let (pa, pb) = (free_port(), free_port());
    let _servers = (ServerProcess(dir.join("a")), ServerProcess(dir.join("b")));
    let cfg = config(
        "",
        None,
        &(stores_in(&dir)
            + "[lifecycle]\nwakes_per_source_per_hour = 1\nwakes_per_server_per_hour = 100\n"
            + &sleeper("a", pa, &dir)
            + &sleeper("b", pb, &dir)),
    );
    let warden = Warden::start("hardening-wake-budget", &cfg);
    wait_for(
        "both asleep",
        Duration::from_secs(10),
        || warden.log(),
        || state(&warden, "a", "sleeping") + state(&warden, "b", "sleeping") == 2.0,
    );

    // 127.0.5.0/24 spends its one wake on `a` (an older client, held without the anteroom).
    let first = login(
        Ipv4Addr::new(127, 0, 5, 1),
        warden.addr(),
        "a.wake.test",
        OLDER,
    );
    wait_for(
        "a wakes",
        Duration::from_secs(10),
        || warden.log(),
        || requests(&warden, "started") == 1.0,
    );
    drop(first);

    // Every further attempt from that /24 on the sleeping `b` is refused with a message,
    // older clients and 1.20.5+ ones alike.
    let attempts = [
        (Ipv4Addr::new(127, 0, 5, 2), OLDER),
        (Ipv4Addr::new(127, 0, 5, 3), OLDER),
        (Ipv4Addr::new(127, 0, 5, 4), ANTEROOM),
        (Ipv4Addr::new(127, 0, 5, 250), ANTEROOM),
    ];
    for (from, protocol) in attempts {
        let mut s = login(from, warden.addr(), "b.wake.test", protocol);
        let text = disconnect_text(&mut s);
        assert!(
            text.as_deref()
                .is_some_and(|t| t.contains("your network") && t.contains("b stays asleep")),
            "{from} ({protocol}): {text:?}\n{}",
            warden.log()
        );
    }
    assert_eq!(requests(&warden, "refused_source"), 4.0, "{}", warden.log());
    assert!(!listening(pb), "b was woken\n{}", warden.log());
    assert_eq!(state(&warden, "b", "sleeping"), 1.0);

    // A player from another /24 (127.0.0.1) wakes `b` as usual.
    real_player_joins(&warden, "b.wake.test");
    assert_eq!(requests(&warden, "started"), 2.0, "{}", warden.log());
}
