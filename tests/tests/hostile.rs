//! Hostile and broken input: each connection is closed cleanly within the pre-routing
//! deadline, without a reply and without a backend connection, while a real player on the
//! same Warden keeps playing.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use warden_tests::*;
use warden_wire::{encode_frame, Handshake, Intent, PacketWriter};

const DEADLINE: Duration = Duration::from_secs(2);
/// Scheduling slack on a loaded 2-core machine; the point is "closed", not "fast".
const SLACK: Duration = Duration::from_secs(3);

fn handshake(host: &str, intent: Intent) -> Vec<u8> {
    Handshake {
        protocol: 767,
        address: host.into(),
        port: 25565,
        intent,
    }
    .encode()
    .to_vec()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(body, &mut out);
    out.to_vec()
}

#[test]
fn hostile_inputs_are_closed_while_players_play() {
    let backend = Backend::start("1.21.4", &[]);
    let port = backend.port("1.21.4");
    let cfg = config(
        "handshake_timeout = \"2s\"",
        None,
        &server("s", "s.test", &format!("127.0.0.1:{port}")),
    );
    let warden = Warden::start("hostile", &cfg);
    let p = warden.port.to_string();
    let player = player_spawn(&[
        "--port",
        &p,
        "--version",
        "1.21.4",
        "--server-host",
        "s.test",
        "--hold-ms",
        "8000",
        "--chat",
        "still here",
    ]);

    let mut long_host = handshake(&"a".repeat(300), Intent::Login);
    long_host.truncate(long_host.len());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "varint over 5 bytes",
            vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        ),
        (
            "2 MiB length",
            [vec![0xff, 0xff, 0x7f], vec![0u8; 100]].concat(),
        ),
        ("truncated frame", vec![0x10, 0x00, 0xf8]),
        (
            "wrong packet id",
            frame(&PacketWriter::new(0x05).varint(767).into_frame()[1..]),
        ),
        (
            "bad intent",
            PacketWriter::new(0)
                .varint(767)
                .string("s.test")
                .u16(25565)
                .varint(9)
                .into_frame()
                .to_vec(),
        ),
        (
            "handshake over 1 KiB",
            PacketWriter::new(0)
                .varint(767)
                .string(&"x".repeat(1100))
                .u16(1)
                .varint(2)
                .into_frame()
                .to_vec(),
        ),
        ("host over 255 chars", long_host),
        (
            "unknown host",
            [
                handshake("nobody.test", Intent::Login),
                PacketWriter::new(0)
                    .string("Mallory")
                    .raw(&[0u8; 16])
                    .into_frame()
                    .to_vec(),
            ]
            .concat(),
        ),
        (
            "PROXY header from untrusted peer",
            [
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 25565\r\n".to_vec(),
                handshake("s.test", Intent::Status),
            ]
            .concat(),
        ),
        (
            "login start garbage",
            [
                handshake("s.test", Intent::Login),
                frame(&[0x00, 0x40, 1, 2]),
            ]
            .concat(),
        ),
        ("nothing at all", vec![]),
    ];
    for (name, bytes) in &cases {
        let out = raw_exchange(warden.addr(), bytes, DEADLINE + SLACK + SLACK);
        let closed = out
            .closed_after
            .unwrap_or_else(|| panic!("{name}: still open after {:?}", DEADLINE + SLACK + SLACK));
        assert!(
            closed <= DEADLINE + SLACK,
            "{name}: closed only after {closed:?}"
        );
        assert!(out.reply.is_empty(), "{name}: got a reply {:?}", out.reply);
    }

    // One byte per second: the deadline covers the whole pre-routing phase, not each read.
    let start = Instant::now();
    let mut s = TcpStream::connect(warden.addr()).expect("connect");
    let slow = handshake("s.test", Intent::Login);
    let mut closed = false;
    for b in slow.iter().take(10) {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1000));
        let out = read_until_close(&mut s, Instant::now(), Duration::from_millis(10));
        if out.closed_after.is_some() {
            closed = true;
            break;
        }
    }
    assert!(closed, "slowloris connection was never closed");
    assert!(
        start.elapsed() <= DEADLINE + SLACK + Duration::from_secs(1),
        "closed after {:?}",
        start.elapsed()
    );

    let (ok, lines) = player_wait(player);
    assert!(ok, "the real player was disturbed: {lines:?}");
    assert_eq!(
        backend.events("login").len(),
        1,
        "hostile input must never reach the backend"
    );
    assert!(
        warden.metric("warden_handshake_errors_total") >= 6.0,
        "{}",
        warden.metrics()
    );
    assert!(
        warden.metric("warden_connections_rejected_total{reason=\"untrusted_proxy_header\"}")
            >= 1.0
    );
    assert!(warden.metric("warden_connections_rejected_total{reason=\"timeout\"}") >= 2.0);
}
