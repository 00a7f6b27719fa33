//! Asking a backend for its status, within a time and a size limit.
//!
//! Parsing is [`warden_wire::status`]: lenient about what backends append or how they
//! write the MOTD, strict about size. A status bigger than the limit is refused as soon
//! as its length prefix arrives, before its body is read.

use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::wire::{
    parse_status_response, FrameDecoder, Handshake, Intent, PacketWriter, StatusDoc, StatusError,
    WireError,
};

/// The largest Status Response frame accepted by default: ample for a 64×64 favicon (a
/// few KiB) and the 32,767 characters a vanilla client reads at most.
pub const DEFAULT_MAX_STATUS_BYTES: usize = 64 * 1024;

/// A backend's status, parsed once and ready to serve.
#[derive(Debug, Clone)]
pub struct BackendStatus {
    pub doc: StatusDoc,
    /// The protocol Warden asked with.
    pub asked: i32,
    /// A protocol the backend answered with because it was asked with it (multi-version
    /// servers echo the client's version); the last one seen.
    echoed: Option<i32>,
    /// The backend echoed two different protocols: it answers each client as its own
    /// version, so the cached answer is adapted to each client's protocol.
    echoes: bool,
}

impl BackendStatus {
    pub fn new(doc: StatusDoc, asked: i32) -> Self {
        let echoed = (doc.protocol == asked).then_some(asked);
        Self {
            doc,
            asked,
            echoed,
            echoes: false,
        }
    }

    /// Carries over what earlier answers of the same backend showed.
    pub fn learn_from(mut self, previous: &BackendStatus) -> Self {
        self.echoes = previous.echoes
            || matches!((self.echoed, previous.echoed), (Some(now), Some(before)) if now != before);
        self.echoed = self.echoed.or(previous.echoed);
        self
    }

    /// The framed Status Response for a client speaking `protocol`.
    pub fn frame_for(&self, protocol: i32) -> Bytes {
        if self.echoes {
            self.doc.with_protocol(protocol)
        } else {
            self.doc.frame()
        }
    }

    /// Bytes this status holds (for cache accounting).
    pub fn cost(&self) -> usize {
        std::mem::size_of::<Self>() + self.doc.heap_bytes()
    }
}

#[derive(Debug, Error, Clone)]
pub enum FetchError {
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("closed before answering")]
    Closed,
    #[error("status of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("bad status response: {0}")]
    Malformed(String),
    #[error("status cache full of requests in flight")]
    Busy,
}

impl From<StatusError> for FetchError {
    fn from(e: StatusError) -> Self {
        match e {
            StatusError::TooLarge { len, max }
            | StatusError::Wire(WireError::FrameTooLarge { len, max }) => {
                FetchError::TooLarge { len, max }
            }
            other => FetchError::Malformed(other.to_string()),
        }
    }
}

/// What to put in the status handshake sent to the backend.
pub struct StatusQuery<'a> {
    pub backend: &'a str,
    pub address: &'a str,
    pub port: u16,
    pub protocol: i32,
    /// Send a PROXY v2 header first (Warden's own address), for backends that require one.
    pub proxy_protocol: bool,
}

/// Connects to the backend and performs a status request, all within `limit`, accepting
/// a Status Response frame of at most `max_bytes`.
pub async fn fetch_status(
    q: StatusQuery<'_>,
    limit: Duration,
    max_bytes: usize,
) -> Result<BackendStatus, FetchError> {
    let asked = q.protocol;
    let doc = timeout(limit, fetch_inner(q, max_bytes))
        .await
        .map_err(|_| FetchError::Timeout)??;
    Ok(BackendStatus::new(doc, asked))
}

async fn fetch_inner(q: StatusQuery<'_>, max_bytes: usize) -> Result<StatusDoc, FetchError> {
    let mut stream = TcpStream::connect(q.backend)
        .await
        .map_err(|e| FetchError::Connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let mut out = Vec::with_capacity(64);
    if q.proxy_protocol {
        if let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) {
            out.extend_from_slice(&crate::wire::proxy_protocol::encode_v2(local, peer));
        }
    }
    let handshake = Handshake {
        protocol: q.protocol,
        address: q.address.to_string(),
        port: q.port,
        intent: Intent::Status,
    };
    out.extend_from_slice(&handshake.encode());
    out.extend_from_slice(&PacketWriter::new(0x00).into_frame());
    stream
        .write_all(&out)
        .await
        .map_err(|_| FetchError::Closed)?;
    let mut decoder = FrameDecoder::new();
    loop {
        if let Some(body) = decoder.next_frame(max_bytes).map_err(StatusError::from)? {
            return Ok(parse_status_response(&body, max_bytes)?);
        }
        let n = stream
            .read_buf(decoder.buffer_mut())
            .await
            .map_err(|_| FetchError::Closed)?;
        if n == 0 {
            return Err(FetchError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::status::status_from_json;

    fn answer(json: &str, asked: i32) -> BackendStatus {
        BackendStatus::new(status_from_json(json, 1 << 16).unwrap(), asked)
    }

    #[test]
    fn adapts_the_protocol_only_for_backends_that_echo() {
        let single = |asked| answer(r#"{"version":{"name":"1.21","protocol":767}}"#, asked);
        // A single-version server answers 767 whoever asks: never adapted, even after a
        // 1.21 client happened to ask first.
        let s = single(767).learn_from(&single(47)).learn_from(&single(767));
        assert_eq!(s.frame_for(47), s.doc.frame());
        // A multi-version server answered two clients as their own versions.
        let multi = |p: i32| {
            answer(
                &format!(r#"{{"version":{{"name":"x","protocol":{p}}}}}"#),
                p,
            )
        };
        let first = multi(767);
        assert_eq!(
            first.frame_for(47),
            first.doc.frame(),
            "one echo proves nothing"
        );
        let m = multi(766).learn_from(&first);
        assert_ne!(m.frame_for(47), m.doc.frame());
        assert_eq!(m.frame_for(47), m.doc.with_protocol(47));
        // Once learned, an unsupported probe (native answer) keeps it.
        let later = answer(r#"{"version":{"name":"x","protocol":765}}"#, 9999).learn_from(&m);
        assert_eq!(later.frame_for(47), later.doc.with_protocol(47));
    }

    #[test]
    fn too_large_is_its_own_error() {
        let e: FetchError = StatusError::Wire(WireError::FrameTooLarge { len: 9, max: 1 }).into();
        assert!(matches!(e, FetchError::TooLarge { len: 9, max: 1 }));
    }
}
