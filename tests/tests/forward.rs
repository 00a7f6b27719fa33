//! What the backend sees: the handshake Warden replays (host rewrite, intent 3 → 2 for
//! servers that don't accept transfers), Login Start, and the bytes that followed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use bytes::BytesMut;
use warden_tests::*;
use warden_wire::{FrameDecoder, Handshake, Intent, PacketWriter};

/// Accepts connections and reports the first frame (the handshake) and the rest.
fn capture(listener: TcpListener, tx: mpsc::Sender<(Handshake, Vec<u8>)>) {
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let mut d = FrameDecoder::new();
            d.extend(&got);
            if let Ok(Some(body)) = d.next_frame(1024) {
                if let Ok(hs) = Handshake::parse(&body) {
                    let _ = tx.send((hs, d.buffered().to_vec()));
                }
            }
            let _ = s.write_all(b"\x01");
        }
    });
}

#[test]
fn handshake_is_replayed_with_rewrites() {
    let plain = TcpListener::bind("127.0.0.1:0").expect("bind");
    let transfers = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (tx, rx) = mpsc::channel();
    let (plain_addr, transfers_addr) = (
        plain.local_addr().expect("a"),
        transfers.local_addr().expect("a"),
    );
    capture(plain, tx.clone());
    capture(transfers, tx);
    let rest = format!(
        "{}rewrite_host = \"internal.local\"\n{}accepts_transfers = true\n",
        server("plain", "plain.test", &plain_addr.to_string()),
        server("xfer", "xfer.test", &transfers_addr.to_string())
    );
    let warden = Warden::start("forward", &config("", None, &rest));
    let login = PacketWriter::new(0)
        .string("Bob")
        .raw(&[1u8; 16])
        .into_frame();
    let play = b"\x05\x07play!".to_vec();

    for (host, want_host, want_intent) in [
        (
            "Plain.Test.\0FML3\0",
            "internal.local\0FML3\0",
            Intent::Login,
        ),
        ("xfer.test", "xfer.test", Intent::Transfer),
    ] {
        let hs = Handshake {
            protocol: 767,
            address: host.into(),
            port: 25565,
            intent: Intent::Transfer,
        };
        let mut out = BytesMut::new();
        out.extend_from_slice(&hs.encode());
        out.extend_from_slice(&login);
        out.extend_from_slice(&play);
        let mut c = TcpStream::connect(warden.addr()).expect("connect");
        c.write_all(&out).expect("send");
        let (seen, after) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("backend saw nothing");
        assert_eq!(seen.address, want_host);
        assert_eq!(seen.intent, want_intent);
        assert_eq!(seen.protocol, 767);
        assert_eq!(
            after,
            [login.to_vec(), play.clone()].concat(),
            "Login Start and play bytes follow unchanged"
        );
    }
}
