//! Reading what a client sends before Warden knows where it goes.
//!
//! Everything here runs under one deadline (5 s by default) and a byte budget, so a
//! slowloris, a 2 MiB length prefix or a scanner costs a few KiB and a timer, never a
//! backend connection. Bytes the client sends ahead (status request and ping in the same
//! segment as the handshake, or play bytes right after Login Start) stay buffered for the
//! next step.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::wire::legacy::{self, Detection, LegacyPing};
use crate::wire::proxy_protocol::{self, Parsed};
use crate::wire::{FrameDecoder, Handshake, WireError};

#[derive(Debug, Error)]
pub(crate) enum PrerouteError {
    #[error("deadline passed")]
    Timeout,
    #[error("client closed")]
    Closed,
    #[error("client sent more than the pre-routing budget")]
    TooMuch,
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("PROXY header: {0}")]
    ProxyHeader(String),
    #[error("PROXY header from an untrusted address")]
    UntrustedProxyHeader,
}

impl PrerouteError {
    /// Label for `warden_handshake_errors_total` / reject reasons.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            PrerouteError::Timeout => "timeout",
            PrerouteError::Closed => "closed",
            PrerouteError::TooMuch => "too_much",
            PrerouteError::Io(_) => "io",
            PrerouteError::Wire(w) => w.kind(),
            PrerouteError::ProxyHeader(_) => "bad_proxy_header",
            PrerouteError::UntrustedProxyHeader => "untrusted_proxy_header",
        }
    }
}

/// The first thing a client said.
pub(crate) enum First {
    Legacy(LegacyPing),
    Modern(Handshake),
}

/// A client connection before routing, with its read-ahead buffer.
pub(crate) struct Preroute {
    pub client: TcpStream,
    buf: FrameDecoder,
    deadline: Instant,
    budget: usize,
    /// How long a lone `FE` or `FE 01` may wait for more bytes before it counts as a beta
    /// or 1.4 ping (those clients send nothing more; modern frames arrive in one segment).
    legacy_grace: Duration,
}

impl Preroute {
    pub(crate) fn new(
        client: TcpStream,
        deadline: Instant,
        budget: usize,
        legacy_grace: Duration,
    ) -> Self {
        Self {
            client,
            buf: FrameDecoder::new(),
            deadline,
            budget,
            legacy_grace,
        }
    }

    /// Allows `extra` more bytes (e.g. a returning player's ticket after Login Start).
    pub(crate) fn extend_budget(&mut self, extra: usize) {
        self.budget += extra;
    }

    /// When pre-routing must be over: every exchange before routing (status and ping,
    /// legacy ping, the backend's answer they wait for) ends by then.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Reads more bytes, within the deadline and the byte budget.
    async fn fill(&mut self) -> Result<(), PrerouteError> {
        let held = self.buf.buffered().len();
        if held >= self.budget {
            return Err(PrerouteError::TooMuch);
        }
        let buf = self.buf.buffer_mut();
        buf.reserve(512.min(self.budget - held));
        let n = timeout_at(self.deadline, self.client.read_buf(buf))
            .await
            .map_err(|_| PrerouteError::Timeout)??;
        if n == 0 {
            return Err(PrerouteError::Closed);
        }
        Ok(())
    }

    /// For connections from a trusted proxy: the real client address from its PROXY header
    /// (or the proxy's own address when the header says LOCAL or is absent).
    pub(crate) async fn proxy_header(
        &mut self,
        peer: SocketAddr,
    ) -> Result<SocketAddr, PrerouteError> {
        loop {
            match proxy_protocol::parse(self.buf.buffered()) {
                Parsed::Absent => return Ok(peer),
                Parsed::Incomplete => {
                    if self.buf.buffered().len() >= proxy_protocol::MAX_HEADER_BYTES {
                        return Err(PrerouteError::ProxyHeader("too long".into()));
                    }
                    self.fill().await?
                }
                Parsed::Header { len, source } => {
                    self.buf.consume(len);
                    return Ok(source.unwrap_or(peer));
                }
                Parsed::Invalid(why) => return Err(PrerouteError::ProxyHeader(why)),
            }
        }
    }

    /// Reads the first message: a legacy ping or a modern handshake (≤ `max_frame` bytes).
    pub(crate) async fn first(
        &mut self,
        max_frame: usize,
        proxy_trusted: bool,
    ) -> Result<First, PrerouteError> {
        loop {
            match legacy::detect(self.buf.buffered(), true)? {
                Detection::Modern => break,
                Detection::Legacy(ping) => return Ok(First::Legacy(ping)),
                Detection::NeedMore if self.buf.buffered().is_empty() => self.fill().await?,
                // A lone `FE`/`FE 01`, or `FE 01 FA` without a complete MC|PingHost
                // (what mcstatus sends): wait briefly, then answer as a legacy ping.
                Detection::NeedMore if self.buf.buffered().starts_with(&[0xFE]) => {
                    let grace = Instant::now() + self.legacy_grace;
                    let shorter = grace.min(self.deadline);
                    let saved = std::mem::replace(&mut self.deadline, shorter);
                    let got = self.fill().await;
                    self.deadline = saved;
                    match got {
                        Ok(()) => {}
                        Err(PrerouteError::Timeout) if Instant::now() < saved => {
                            if let Detection::Legacy(ping) =
                                legacy::detect(self.buf.buffered(), false)?
                            {
                                return Ok(First::Legacy(ping));
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                Detection::NeedMore => self.fill().await?,
            }
        }
        if !proxy_trusted && proxy_protocol::starts_with_header(self.buf.buffered()) {
            return Err(PrerouteError::UntrustedProxyHeader);
        }
        let body = self.frame(max_frame).await?;
        Ok(First::Modern(Handshake::parse(&body)?))
    }

    /// Reads the next whole frame body (packet id + fields) of at most `max` bytes.
    pub(crate) async fn frame(&mut self, max: usize) -> Result<Bytes, PrerouteError> {
        loop {
            if let Some(body) = self.buf.next_frame(max)? {
                return Ok(body);
            }
            self.fill().await?;
        }
    }

    /// Everything read but not yet consumed (replayed to the backend verbatim).
    pub(crate) fn take_rest(&mut self) -> Bytes {
        self.buf.take_rest()
    }

    /// The client's socket, the read-ahead buffer freed: a session that lasts hours must
    /// not keep the buffer its handshake arrived in.
    pub(crate) fn into_client(self) -> TcpStream {
        self.client
    }
}
