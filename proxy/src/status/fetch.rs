//! Asking a backend for its status, and reading its answer leniently.
//!
//! Backends disagree about the JSON: `description` is a string on some versions and a
//! text component on others (lazymc #57), and some modded servers append bytes after the
//! document (Gate #297). Warden takes the first JSON value and ignores the rest, and
//! re-serializes it so clients always get clean JSON.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::wire::{
    status_response_packet, FrameDecoder, Handshake, Intent, PacketReader, PacketWriter,
};

/// Largest status frame accepted from a backend (modded servers send large mod lists).
const MAX_STATUS_FRAME: usize = 2 * 1024 * 1024 - 1;

/// A backend's status, parsed once and ready to serve.
#[derive(Debug, Clone)]
pub struct BackendStatus {
    /// The framed Status Response to send modern clients as is.
    pub frame: Bytes,
    pub online: i64,
    pub max: i64,
    pub version_name: String,
    pub protocol: i32,
    /// The MOTD flattened to plain text (for legacy clients).
    pub motd_text: String,
}

#[derive(Debug, Error, Clone)]
pub enum FetchError {
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("closed before answering")]
    Closed,
    #[error("bad status response: {0}")]
    Malformed(String),
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

/// Connects to the backend and performs a status request, all within `limit`.
pub async fn fetch_status(
    q: StatusQuery<'_>,
    limit: Duration,
) -> Result<BackendStatus, FetchError> {
    timeout(limit, fetch_inner(q))
        .await
        .map_err(|_| FetchError::Timeout)?
}

async fn fetch_inner(q: StatusQuery<'_>) -> Result<BackendStatus, FetchError> {
    let mut stream = TcpStream::connect(q.backend)
        .await
        .map_err(|e| FetchError::Connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let mut out = Vec::with_capacity(64);
    if q.proxy_protocol {
        if let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) {
            out.extend_from_slice(&crate::proxy_protocol::encode_v2(local, peer));
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
        match decoder.next_frame(MAX_STATUS_FRAME) {
            Ok(Some(body)) => return parse_response(&body),
            Ok(None) => {}
            Err(e) => return Err(FetchError::Malformed(e.to_string())),
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

/// Parses a Status Response body (id 0x00 + JSON string).
pub fn parse_response(body: &[u8]) -> Result<BackendStatus, FetchError> {
    let mut r = PacketReader::new(body);
    let id = r
        .varint()
        .map_err(|e| FetchError::Malformed(e.to_string()))?;
    if id != 0x00 {
        return Err(FetchError::Malformed(format!("packet id {id:#04x}")));
    }
    let json = r
        .string(MAX_STATUS_FRAME / 4)
        .map_err(|e| FetchError::Malformed(e.to_string()))?;
    status_from_json(json)
}

/// Reads the first JSON value of `json` (ignoring anything after it) into a status.
pub fn status_from_json(json: &str) -> Result<BackendStatus, FetchError> {
    let value: Value = serde_json::Deserializer::from_str(json)
        .into_iter::<Value>()
        .next()
        .ok_or_else(|| FetchError::Malformed("empty document".into()))?
        .map_err(|e| FetchError::Malformed(e.to_string()))?;
    if !value.is_object() {
        return Err(FetchError::Malformed("not a JSON object".into()));
    }
    let clean = value.to_string();
    Ok(BackendStatus {
        frame: status_response_packet(&clean),
        online: value["players"]["online"].as_i64().unwrap_or(0),
        max: value["players"]["max"].as_i64().unwrap_or(0),
        version_name: value["version"]["name"].as_str().unwrap_or("").to_string(),
        protocol: value["version"]["protocol"].as_i64().unwrap_or(-1) as i32,
        motd_text: flatten_text(&value["description"]),
    })
}

/// Flattens a text component (string, object with `text`/`extra`, or array) to plain text.
pub fn flatten_text(v: &Value) -> String {
    let mut out = String::new();
    fn walk(v: &Value, out: &mut String, depth: usize) {
        if depth > 32 {
            return;
        }
        match v {
            Value::String(s) => out.push_str(s),
            Value::Array(items) => items.iter().for_each(|i| walk(i, out, depth + 1)),
            Value::Object(map) => {
                if let Some(t) = map.get("text") {
                    walk(t, out, depth + 1);
                }
                if let Some(extra) = map.get("extra") {
                    walk(extra, out, depth + 1);
                }
            }
            _ => {}
        }
    }
    walk(v, &mut out, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_parsing() {
        let s = status_from_json(r#"{"version":{"name":"1.21","protocol":767},"players":{"max":20,"online":3},"description":"Hello"}trailing junk"#).unwrap();
        assert_eq!((s.online, s.max, s.protocol), (3, 20, 767));
        assert_eq!(s.motd_text, "Hello");
        let c =
            status_from_json(r#"{"description":{"text":"A","extra":[{"text":"B"},"C"]}}"#).unwrap();
        assert_eq!(c.motd_text, "ABC");
        assert_eq!(c.protocol, -1);
        assert!(status_from_json("").is_err());
        assert!(status_from_json("[1,2]").is_err());
        assert!(status_from_json("{broken").is_err());
    }
}
