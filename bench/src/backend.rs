//! The bench's own Minecraft-speaking backend.
//!
//! A real server would dominate the numbers with its own costs (world ticking, encryption)
//! and could not sink a gigabyte. This one speaks just enough protocol to be routed to —
//! status, and handshake + Login Start — and counts what it sees, so a client knows a login
//! was really delivered. After Login Start the player's name picks a raw-byte behaviour:
//!
//! * `ack`: write one byte and close (login-rate mode).
//! * `echo`: send every byte back (latency mode, idle sessions).
//! * `sink`: read an 8-byte big-endian length, discard that many bytes, answer with the
//!   count (upload throughput). The length is explicit so the mode does not depend on the
//!   path forwarding half-closes.
//! * `source`: read an 8-byte length and stream that many bytes (download throughput).

use parking_lot::Mutex;
use std::io::{Cursor, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;
use warden_wire::{pong_packet, status_response_packet, FrameDecoder, Handshake, LoginStart};
use warden_wire::{Intent, PacketReader};

use crate::proto::{read_frame, IO_TIMEOUT};

/// Raw-mode sessions may legitimately sit idle (the RSS mode holds them for a while); the
/// bound only stops a leaked connection from living forever.
const RAW_IDLE: Duration = Duration::from_secs(15 * 60);

/// Frames before raw mode are tiny; anything bigger is a confused peer.
const MAX_PRE_FRAME: usize = 64 * 1024;

const CHUNK: usize = 64 * 1024;

/// The description is a plain string, which vanilla accepts like a text component: lazymc
/// 0.2.11 decodes only that form and otherwise never sees the backend as started.
const STATUS_JSON: &str = r#"{"version":{"name":"1.21","protocol":767},"players":{"max":100,"online":0,"sample":[]},"description":"warden-bench backend","enforcesSecureChat":false}"#;

/// What the backend has seen; modes read these to know their traffic arrived.
#[derive(Default, Debug)]
pub struct Stats {
    pub status: AtomicU64,
    pub pings: AtomicU64,
    pub logins: AtomicU64,
    pub sunk_bytes: AtomicU64,
    pub sourced_bytes: AtomicU64,
    pub errors: AtomicU64,
    /// `listening <unix ns>` and `login <unix ns>` lines, for the wake mode, which runs this
    /// backend as the woken server and times the gap between the two from outside.
    pub events: Option<Mutex<std::fs::File>>,
}

impl Stats {
    fn event(&self, what: &str) {
        if let Some(f) = &self.events {
            let ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            {
                let mut f = f.lock();
                let _ = writeln!(f, "{what} {ns}");
            }
        }
    }
}

#[derive(Serialize, Debug, Default)]
pub struct StatsSnapshot {
    pub status: u64,
    pub pings: u64,
    pub logins: u64,
    pub sunk_bytes: u64,
    pub sourced_bytes: u64,
    pub errors: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            status: self.status.load(Ordering::Relaxed),
            pings: self.pings.load(Ordering::Relaxed),
            logins: self.logins.load(Ordering::Relaxed),
            sunk_bytes: self.sunk_bytes.load(Ordering::Relaxed),
            sourced_bytes: self.sourced_bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

pub struct Backend {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
}

impl Backend {
    pub async fn start(listen: SocketAddr) -> Result<Self> {
        Self::start_logged(listen, None).await
    }

    /// [`Backend::start`], appending timing events to `events` (see [`Stats::events`]).
    pub async fn start_logged(listen: SocketAddr, events: Option<&Path>) -> Result<Self> {
        let sock = match listen {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        sock.set_reuseaddr(true)?;
        sock.bind(listen)
            .with_context(|| format!("bind backend on {listen}"))?;
        // Above tokio's default of 1024: the idle mode opens hundreds at once, and a dropped
        // SYN costs a one-second retransmit that would be billed to the path.
        let listener = sock.listen(4096)?;
        let addr = listener.local_addr()?;
        let events = match events {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("open {}", p.display()))?,
            )),
            None => None,
        };
        let stats = Arc::new(Stats {
            events,
            ..Stats::default()
        });
        stats.event("listening");
        let s = stats.clone();
        tokio::spawn(async move { accept_loop(listener, s).await });
        Ok(Self { addr, stats })
    }
}

async fn accept_loop(listener: TcpListener, stats: Arc<Stats>) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let stats = stats.clone();
                tokio::spawn(async move {
                    if serve(sock, &stats).await.is_err() {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            // EMFILE under the idle mode: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve(mut sock: TcpStream, stats: &Stats) -> Result<()> {
    sock.set_nodelay(true)?;
    let mut dec = FrameDecoder::new();
    let hs = Handshake::parse(&read_pre(&mut sock, &mut dec).await?)?;
    match hs.intent {
        Intent::Status => serve_status(sock, dec, stats).await,
        Intent::Login | Intent::Transfer => {
            let ls = LoginStart::parse(&read_pre(&mut sock, &mut dec).await?, hs.protocol)?;
            stats.logins.fetch_add(1, Ordering::Relaxed);
            stats.event("login");
            let rest = dec.take_rest();
            serve_raw(sock, rest, &ls.name, stats).await
        }
    }
}

async fn read_pre(sock: &mut TcpStream, dec: &mut FrameDecoder) -> Result<Bytes> {
    let frame = read_frame(sock, dec, IO_TIMEOUT).await?;
    if frame.len() > MAX_PRE_FRAME {
        bail!("oversized pre-login frame");
    }
    Ok(frame)
}

async fn serve_status(mut sock: TcpStream, mut dec: FrameDecoder, stats: &Stats) -> Result<()> {
    // Status Request, then Ping; a pinger may stop after the response, which is fine.
    let req = read_pre(&mut sock, &mut dec).await?;
    if PacketReader::new(&req).varint()? != 0x00 {
        bail!("expected status request");
    }
    stats.status.fetch_add(1, Ordering::Relaxed);
    timeout(
        IO_TIMEOUT,
        sock.write_all(&status_response_packet(STATUS_JSON)),
    )
    .await??;
    let ping = match read_frame(&mut sock, &mut dec, IO_TIMEOUT).await {
        Ok(p) => p,
        Err(_) => return Ok(()),
    };
    let mut r = PacketReader::new(&ping);
    if r.varint()? != 0x01 {
        bail!("expected ping");
    }
    let payload = r.i64()?;
    stats.pings.fetch_add(1, Ordering::Relaxed);
    timeout(IO_TIMEOUT, sock.write_all(&pong_packet(payload))).await??;
    Ok(())
}

async fn serve_raw(sock: TcpStream, rest: Bytes, name: &str, stats: &Stats) -> Result<()> {
    let (rd, mut wr) = sock.into_split();
    // Bytes that arrived in the same segment as Login Start belong to the raw stream.
    let mut rd = Cursor::new(rest).chain(rd);
    match name {
        "ack" => {
            timeout(IO_TIMEOUT, wr.write_all(&[1])).await??;
            Ok(())
        }
        "echo" => echo(&mut rd, &mut wr).await,
        "sink" => {
            let len = read_len(&mut rd).await?;
            let mut buf = vec![0u8; CHUNK * 4];
            let mut got = 0u64;
            while got < len {
                let n = timeout(RAW_IDLE, rd.read(&mut buf)).await??;
                if n == 0 {
                    bail!("sink: eof after {got} of {len}");
                }
                got += n as u64;
                stats.sunk_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            timeout(IO_TIMEOUT, wr.write_all(&got.to_be_bytes())).await??;
            Ok(())
        }
        "source" => {
            let len = read_len(&mut rd).await?;
            let buf = vec![0x5au8; CHUNK];
            let mut sent = 0u64;
            while sent < len {
                let n = (len - sent).min(CHUNK as u64) as usize;
                timeout(RAW_IDLE, wr.write_all(&buf[..n])).await??;
                sent += n as u64;
                stats.sourced_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            timeout(IO_TIMEOUT, wr.shutdown()).await??;
            Ok(())
        }
        // Unknown names hold the session like `echo`, so any client can idle here.
        _ => echo(&mut rd, &mut wr).await,
    }
}

async fn read_len<R: AsyncRead + Unpin>(rd: &mut R) -> Result<u64> {
    let mut len = [0u8; 8];
    timeout(IO_TIMEOUT, rd.read_exact(&mut len)).await??;
    Ok(u64::from_be_bytes(len))
}

async fn echo<R, W>(rd: &mut R, wr: &mut W) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Small: ten thousand idle sessions each hold one.
    let mut buf = vec![0u8; 4 * 1024];
    loop {
        let n = timeout(RAW_IDLE, rd.read(&mut buf)).await??;
        if n == 0 {
            return Ok(());
        }
        timeout(IO_TIMEOUT, wr.write_all(&buf[..n])).await??;
    }
}
