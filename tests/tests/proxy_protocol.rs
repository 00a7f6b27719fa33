//! PROXY protocol: a header from a trusted load balancer gives the real client address,
//! and Warden announces that address to backends that ask for a v2 header.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use warden_tests::*;
use warden_wire::{Handshake, Intent, PacketWriter};

/// What the backend saw: the v2 source address and the handshake bytes that followed.
fn accept_v2(listener: TcpListener, tx: mpsc::Sender<(Ipv4Addr, u16, Vec<u8>)>) {
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = [0u8; 16];
            if s.read_exact(&mut head).is_err() {
                continue;
            }
            assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n", "v2 signature");
            assert_eq!(head[12], 0x21, "v2 PROXY command");
            assert_eq!(head[13], 0x11, "TCP over IPv4");
            let len = u16::from_be_bytes([head[14], head[15]]) as usize;
            let mut addrs = vec![0u8; len];
            if s.read_exact(&mut addrs).is_err() {
                continue;
            }
            let ip = Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
            let port = u16::from_be_bytes([addrs[8], addrs[9]]);
            let mut rest = vec![0u8; 64];
            let n = s.read(&mut rest).unwrap_or(0);
            rest.truncate(n);
            let _ = s.write_all(b"\x01");
            let _ = tx.send((ip, port, rest));
        }
    });
}

#[test]
fn trusted_header_in_v2_header_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let backend = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    accept_v2(listener, tx);
    let rest = format!(
        "{}proxy_protocol = true\n",
        server("pp", "pp.test", &backend.to_string())
    );
    let warden = Warden::start(
        "proxy-protocol",
        &config("trusted_proxies = [\"127.0.0.1/32\"]", None, &rest),
    );

    let hs = Handshake {
        protocol: 767,
        address: "pp.test".into(),
        port: 25565,
        intent: Intent::Login,
    }
    .encode();
    let login = PacketWriter::new(0)
        .string("Alice")
        .raw(&[7u8; 16])
        .into_frame();
    for header in [
        b"PROXY TCP4 203.0.113.9 127.0.0.1 51234 25565\r\n".to_vec(),
        {
            // The same client announced by a v2 header.
            let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
            h.extend_from_slice(&[203, 0, 113, 9, 127, 0, 0, 1]);
            h.extend_from_slice(&51234u16.to_be_bytes());
            h.extend_from_slice(&25565u16.to_be_bytes());
            h
        },
    ] {
        let mut c = TcpStream::connect(warden.addr()).expect("connect");
        c.write_all(&[header, hs.to_vec(), login.to_vec()].concat())
            .expect("send");
        let (ip, port, replayed) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("backend got no connection");
        assert_eq!((ip, port), (Ipv4Addr::new(203, 0, 113, 9), 51234));
        assert!(
            replayed.starts_with(&hs),
            "handshake replayed after the header"
        );
    }
}
