//! Client-side protocol plumbing shared by every mode.
//!
//! Each helper carries its own deadline so that a stalled peer (a bug in Warden, a dead
//! backend) turns into a counted error instead of a hung benchmark.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use warden_wire::{FrameDecoder, Handshake, Intent, PacketWriter};

/// 1.21 (767): modern enough that Login Start carries a mandatory UUID, which is the layout
/// real clients send today.
pub const PROTOCOL: i32 = 767;

/// Upper bound for any single connect, read or write in the short-lived modes.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Vanilla's frame cap; status responses with favicons come close to it.
pub const MAX_FRAME: usize = 2 * 1024 * 1024;

/// Fixed so repeated runs send byte-identical Login Starts.
const BENCH_UUID: u128 = 0x5741_5244_454e_4245_4e43_4855_5549_4400;

/// Where a mode connects and what it claims to be connecting to.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The handshake address; Warden routes on it, a plain server ignores it.
    pub host: String,
}

impl Target {
    pub fn handshake(&self, intent: Intent) -> Bytes {
        Handshake {
            protocol: PROTOCOL,
            address: self.host.clone(),
            port: self.addr.port(),
            intent,
        }
        .encode()
    }

    /// Handshake and Login Start in one buffer, as a real client sends them in one segment.
    pub fn login_prefix(&self, name: &str) -> BytesMut {
        self.join_prefix(name, PROTOCOL, Intent::Login, &self.host, self.addr.port())
    }

    /// [`Target::login_prefix`] with another protocol, intent or handshake address (a
    /// client following a Transfer names the host and port it was sent to, intent 3).
    pub fn join_prefix(
        &self,
        name: &str,
        protocol: i32,
        intent: Intent,
        host: &str,
        port: u16,
    ) -> BytesMut {
        let mut out = BytesMut::new();
        let hs = Handshake {
            protocol,
            address: host.to_string(),
            port,
            intent,
        };
        out.extend_from_slice(&hs.encode());
        out.extend_from_slice(&login_start(name));
        out
    }

    /// Handshake and Status Request in one buffer.
    pub fn status_prefix(&self) -> BytesMut {
        let mut out = BytesMut::new();
        out.extend_from_slice(&self.handshake(Intent::Status));
        out.extend_from_slice(&PacketWriter::new(0x00).into_frame());
        out
    }
}

pub fn login_start(name: &str) -> Bytes {
    PacketWriter::new(0x00)
        .string(name)
        .raw(&BENCH_UUID.to_be_bytes())
        .into_frame()
}

pub async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .context("connect timed out")?
        .with_context(|| format!("connect {addr}"))?;
    // Every mode but bulk is latency-bound; Nagle would measure the kernel, not the path.
    s.set_nodelay(true)?;
    Ok(s)
}

pub async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, buf: &[u8], t: Duration) -> Result<()> {
    timeout(t, w.write_all(buf))
        .await
        .context("write timed out")??;
    Ok(())
}

pub async fn read_exact<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    t: Duration,
) -> Result<()> {
    timeout(t, r.read_exact(buf))
        .await
        .context("read timed out")?
        .context("read")?;
    Ok(())
}

/// Reads into `buf`, failing on EOF: callers use it only where the peer owes them bytes.
pub async fn read_some<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    t: Duration,
) -> Result<usize> {
    let n = timeout(t, r.read(buf))
        .await
        .context("read timed out")?
        .context("read")?;
    if n == 0 {
        bail!("peer closed early");
    }
    Ok(n)
}

/// Next whole frame body, reading as needed.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    dec: &mut FrameDecoder,
    t: Duration,
) -> Result<Bytes> {
    loop {
        if let Some(frame) = dec.next_frame(MAX_FRAME)? {
            return Ok(frame);
        }
        let n = timeout(t, r.read_buf(dec.buffer_mut()))
            .await
            .context("read timed out")?
            .context("read")?;
        if n == 0 {
            bail!("peer closed mid-frame");
        }
    }
}
