//! A backend's Status Response: read leniently and within a size limit, and served again to
//! clients of any protocol version.
//!
//! Backends disagree about the JSON: `description` is a string on some versions and a
//! text component on others (lazymc #57), and some modded servers append bytes after the
//! document (Gate #297). The parser takes the first JSON value, ignores the rest and
//! re-serializes it, so clients always get clean JSON. `version` is written first with
//! `protocol` last, so the protocol number can be swapped per client ([`StatusDoc::with_protocol`])
//! without serializing the document again.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::packets::PacketReader;
use crate::varint::{varint_len, write_varint};
use crate::WireError;

/// Deepest text component nesting flattened into the plain-text MOTD.
const MAX_TEXT_DEPTH: usize = 32;

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum StatusError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("status of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("empty document")]
    Empty,
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("not a JSON object")]
    NotObject,
}

/// A parsed Status Response, ready to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusDoc {
    /// The framed Status Response (length prefix, id 0x00, JSON string).
    frame: Bytes,
    /// Where the JSON text starts in `frame`.
    json_at: usize,
    /// Byte range of the `version.protocol` digits in the JSON text, when there is one.
    protocol_digits: Option<(usize, usize)>,
    pub online: i64,
    pub max: i64,
    pub version_name: String,
    /// `version.protocol`, or -1 when missing or not an i32.
    pub protocol: i32,
    /// The MOTD flattened to plain text (for legacy clients).
    pub motd_text: String,
}

impl StatusDoc {
    /// The response as the backend gave it (cleaned).
    pub fn frame(&self) -> Bytes {
        self.frame.clone()
    }

    /// The response with `version.protocol` set to `protocol` (as is when it has none).
    pub fn with_protocol(&self, protocol: i32) -> Bytes {
        let Some((start, end)) = self.protocol_digits else {
            return self.frame.clone();
        };
        if protocol == self.protocol {
            return self.frame.clone();
        }
        let json = &self.frame[self.json_at..];
        let digits = protocol.to_string();
        let json_len = json.len() - (end - start) + digits.len();
        let body_len = 1 + varint_len(json_len as i32) + json_len;
        let mut out = BytesMut::with_capacity(varint_len(body_len as i32) + body_len);
        write_varint(&mut out, body_len as i32);
        out.put_u8(0x00);
        write_varint(&mut out, json_len as i32);
        out.put_slice(&json[..start]);
        out.put_slice(digits.as_bytes());
        out.put_slice(&json[end..]);
        out.freeze()
    }

    /// Bytes this status holds on the heap (for cache accounting).
    pub fn heap_bytes(&self) -> usize {
        self.frame.len() + self.version_name.capacity() + self.motd_text.capacity()
    }
}

/// Parses a Status Response body (id 0x00 + JSON string) whose clean JSON must fit in
/// `max_json` bytes. `body` itself is already bounded by the frame limit.
pub fn parse_status_response(body: &[u8], max_json: usize) -> Result<StatusDoc, StatusError> {
    let mut r = PacketReader::new(body);
    r.expect_id(0x00)?;
    let json = r.string(body.len())?;
    status_from_json(json, max_json)
}

/// Reads the first JSON value of `json` (ignoring anything after it) into a status.
pub fn status_from_json(json: &str, max_json: usize) -> Result<StatusDoc, StatusError> {
    if json.len() > max_json {
        return Err(StatusError::TooLarge {
            len: json.len(),
            max: max_json,
        });
    }
    let value: Value = serde_json::Deserializer::from_str(json)
        .into_iter::<Value>()
        .next()
        .ok_or(StatusError::Empty)?
        .map_err(|e| StatusError::Json(e.to_string()))?;
    // Indexing a Value never panics (a missing key is Null); indexing a Map would.
    let online = value["players"]["online"].as_i64().unwrap_or(0);
    let max = value["players"]["max"].as_i64().unwrap_or(0);
    let version_name = value["version"]["name"].as_str().unwrap_or("").to_string();
    let motd_text = flatten_text(&value["description"]);
    let Value::Object(mut doc) = value else {
        return Err(StatusError::NotObject);
    };
    let (text, protocol_digits) = clean_json(&mut doc);
    // Re-serializing can grow a document (`1e15` becomes `1000000000000000.0`).
    if text.len() > max_json {
        return Err(StatusError::TooLarge {
            len: text.len(),
            max: max_json,
        });
    }
    let protocol = match protocol_digits {
        Some((s, e)) => text[s..e].parse().unwrap_or(-1),
        None => -1,
    };
    let body_len = 1 + varint_len(text.len() as i32) + text.len();
    let mut frame = BytesMut::with_capacity(varint_len(body_len as i32) + body_len);
    write_varint(&mut frame, body_len as i32);
    frame.put_u8(0x00);
    write_varint(&mut frame, text.len() as i32);
    let json_at = frame.len();
    frame.put_slice(text.as_bytes());
    Ok(StatusDoc {
        frame: frame.freeze(),
        json_at,
        protocol_digits,
        online,
        max,
        version_name,
        protocol,
        motd_text,
    })
}

/// `doc` as JSON with `version` first and, when it is an i32, `version.protocol` last;
/// returns the text and the byte range of the protocol digits.
fn clean_json(doc: &mut Map<String, Value>) -> (String, Option<(usize, usize)>) {
    let mut out = String::from("{");
    let mut digits = None;
    if let Some(version) = doc.remove("version") {
        out.push_str("\"version\":");
        let protocol = version
            .get("protocol")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok());
        match (version, protocol) {
            (Value::Object(mut v), Some(protocol)) => {
                v.remove("protocol");
                let head = Value::Object(v).to_string();
                out.push_str(&head[..head.len() - 1]);
                if head.len() > 2 {
                    out.push(',');
                }
                out.push_str("\"protocol\":");
                let start = out.len();
                out.push_str(&protocol.to_string());
                digits = Some((start, out.len()));
                out.push('}');
            }
            (other, _) => out.push_str(&other.to_string()),
        }
    }
    let rest = Value::Object(std::mem::take(doc)).to_string();
    let members = &rest[1..rest.len() - 1];
    if !members.is_empty() {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(members);
    }
    out.push('}');
    (out, digits)
}

/// Flattens a text component (string, object with `text`/`extra`, or array) to plain text.
pub fn flatten_text(v: &Value) -> String {
    fn walk(v: &Value, out: &mut String, depth: usize) {
        if depth > MAX_TEXT_DEPTH {
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
    let mut out = String::new();
    walk(v, &mut out, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameDecoder;

    const LIMIT: usize = 64 * 1024;

    fn json_of(frame: &Bytes) -> Value {
        let mut d = FrameDecoder::new();
        d.extend(frame);
        let body = d.next_frame(usize::MAX >> 1).unwrap().unwrap();
        let mut r = PacketReader::new(&body);
        assert_eq!(r.varint().unwrap(), 0);
        serde_json::from_str(r.string(body.len()).unwrap()).unwrap()
    }

    #[test]
    fn lenient_parsing() {
        let s = status_from_json(r#"{"version":{"name":"1.21","protocol":767},"players":{"max":20,"online":3},"description":"Hello"}trailing junk"#, LIMIT).unwrap();
        assert_eq!((s.online, s.max, s.protocol), (3, 20, 767));
        assert_eq!(s.motd_text, "Hello");
        let c = status_from_json(
            r#"{"description":{"text":"A","extra":[{"text":"B"},"C"]}}"#,
            LIMIT,
        )
        .unwrap();
        assert_eq!(c.motd_text, "ABC");
        assert_eq!(c.protocol, -1);
        assert!(status_from_json("", LIMIT).is_err());
        assert!(status_from_json("[1,2]", LIMIT).is_err());
        assert!(status_from_json("{broken", LIMIT).is_err());
    }

    #[test]
    fn protocol_is_swapped_per_client() {
        let s = status_from_json(
            r#"{"description":"x","version":{"protocol":767,"name":"1.21"},"favicon":"data:"}"#,
            LIMIT,
        )
        .unwrap();
        let original = json_of(&s.frame());
        assert_eq!(original["version"]["protocol"], 767);
        for p in [0, 5, 47, 766, 767, 100_000, -1, i32::MIN, i32::MAX] {
            let v = json_of(&s.with_protocol(p));
            assert_eq!(v["version"]["protocol"], p);
            assert_eq!(v["version"]["name"], "1.21");
            assert_eq!(v["description"], original["description"]);
            assert_eq!(v["favicon"], original["favicon"]);
        }
        assert_eq!(s.with_protocol(767), s.frame());
        // No protocol to swap: served as is.
        let bare = status_from_json(r#"{"version":{"name":"x"}}"#, LIMIT).unwrap();
        assert_eq!(bare.with_protocol(5), bare.frame());
        let only = status_from_json(r#"{"version":{"protocol":4}}"#, LIMIT).unwrap();
        assert_eq!(
            json_of(&only.with_protocol(47)),
            serde_json::json!({"version":{"protocol":47}})
        );
    }

    #[test]
    fn size_limits() {
        let big = format!(r#"{{"description":"{}"}}"#, "x".repeat(2000));
        assert!(matches!(
            status_from_json(&big, 1000),
            Err(StatusError::TooLarge { .. })
        ));
        // Numbers that grow when written again count after re-serializing.
        let grows = format!("[{}]", vec!["1e15"; 100].join(","));
        let doc = format!(r#"{{"a":{grows}}}"#);
        assert!(doc.len() < 1000);
        assert!(matches!(
            status_from_json(&doc, 1000),
            Err(StatusError::TooLarge { .. })
        ));
    }
}
