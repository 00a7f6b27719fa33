//! Shared pieces of the anteroom tests: a proxy-side accept that reads the handshake and
//! Login Start the way the proxy does, a raw protocol client, and short-timeout settings.
#![allow(dead_code)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warden_anteroom::{AnteroomSettings, Destination, Guest};
use warden_wire::{FrameDecoder, Handshake, Intent, LoginStart, PacketWriter};

pub const KEY: &[u8] = b"anteroom test key, 32 bytes long";

/// Settings with timings short enough for tests.
pub fn settings() -> AnteroomSettings {
    let mut s = AnteroomSettings::new(KEY.to_vec());
    s.keepalive = Duration::from_millis(300);
    s.keepalive_timeout = Duration::from_millis(1500);
    s.login_timeout = Duration::from_secs(10);
    s.write_timeout = Duration::from_secs(2);
    s.linger = Duration::from_secs(2);
    s
}

pub fn dest() -> Destination {
    Destination {
        server_id: "survival".into(),
        server_name: "Survival SMP".into(),
        host: "play.example.com".into(),
        port: 25599,
    }
}

/// Accepts one connection and reads handshake + Login Start like the proxy does.
pub async fn accept_guest(listener: &TcpListener) -> (Guest, Handshake) {
    let (mut stream, addr) = tokio::time::timeout(Duration::from_secs(60), listener.accept())
        .await
        .expect("client connects in time")
        .expect("accept");
    let mut raw = BytesMut::new();
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    while frames.len() < 2 {
        match decoder.next_frame(4096).expect("valid frames") {
            Some(f) => frames.push(f),
            None => {
                let mut buf = [0u8; 1024];
                let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
                    .await
                    .expect("login bytes in time")
                    .expect("read");
                assert!(n > 0, "client closed before Login Start");
                raw.extend_from_slice(&buf[..n]);
                decoder.extend(&buf[..n]);
            }
        }
    }
    let handshake = Handshake::parse(&frames[0]).expect("handshake");
    let login = LoginStart::parse(&frames[1], handshake.protocol).expect("login start");
    let guest = Guest {
        client: stream,
        received: raw.freeze(),
        protocol: handshake.protocol,
        name: login.name,
        uuid: login.uuid,
        addr,
    };
    (guest, handshake)
}

/// The bytes a client sends before the proxy hands it over.
pub fn login_bytes(protocol: i32, intent: Intent, name: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.extend_from_slice(
        &Handshake {
            protocol,
            address: "survival.example.com".into(),
            port: 25565,
            intent,
        }
        .encode(),
    );
    out.extend_from_slice(
        &PacketWriter::new(0)
            .string(name)
            .raw(&warden_anteroom::offline_uuid(name).to_be_bytes())
            .into_frame(),
    );
    out.freeze()
}

/// A connected (server side as a Guest, client side) pair, as if the proxy had read the login.
pub async fn pair(protocol: i32, intent: Intent) -> (Guest, RawClient) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    client
        .write_all(&login_bytes(protocol, intent, "Tester"))
        .await
        .expect("write login");
    let (guest, _) = accept_guest(&listener).await;
    (
        guest,
        RawClient {
            stream: client,
            decoder: FrameDecoder::new(),
        },
    )
}

/// Speaks the protocol by hand, for the cases a well-behaved client never produces.
pub struct RawClient {
    pub stream: TcpStream,
    decoder: FrameDecoder,
}

impl RawClient {
    /// The next frame body, or None if the server closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(f) = self.decoder.next_frame(1 << 20).expect("server frames") {
                return Some(f);
            }
            let read = self.stream.read_buf(self.decoder.buffer_mut());
            match tokio::time::timeout(Duration::from_secs(10), read).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
                Err(_) => panic!("server sent nothing for 10 s"),
            }
        }
    }

    pub async fn send_body(&mut self, body: &[u8]) {
        self.send_raw(&warden_wire::framed(body)).await;
    }

    /// Writes bytes as they are; errors are ignored (the server may already have closed).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads Login Success and acknowledges it.
    pub async fn log_in(&mut self) {
        let success = self.read_frame().await.expect("login success");
        assert_eq!(success[0], 0x02, "login success id");
        self.send_body(&[0x03]).await;
    }
}
