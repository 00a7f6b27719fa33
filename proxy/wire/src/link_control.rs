//! The frames of a link's control stream (one per edge↔node link, opened by the edge):
//! the node pushes each server's state and status so the edge answers server-list pings
//! without crossing the link, and the edge sends wake and sleep requests that the node
//! answers one by one. Pure and bounded like the rest of this crate, so it is fuzzed.
//!
//! The stream starts with [`CONTROL_PREFIX`] (`"WC"` · version 1 · four zero bytes: as
//! long as a player stream's `Open` prefix, so a node tells the two apart from the same
//! seven bytes). Then frames, each `u32 length` (≤ [`MAX_CONTROL_BYTES`]) · `u8 kind` ·
//! the fields of that kind. Strings are `u8 length` + UTF-8 (server ids ≤ 64 bytes, states
//! ≤ 16), the status is `u32 length` + a Status Response frame as the server sent it
//! (empty: none), an error is `u16 length` + UTF-8. Integers are big-endian.

use bytes::{BufMut, Bytes, BytesMut};

use crate::link::{
    LinkFrameError, Open, Reader, MAGIC, MAX_REASON_BYTES, MAX_SERVER_ID, PREFIX_BYTES, VERSION,
};

/// The first seven bytes of a control stream.
pub const CONTROL_PREFIX: [u8; PREFIX_BYTES] = [b'W', b'C', VERSION, 0, 0, 0, 0];
/// The most one control frame may hold: a status with a favicon is a few KiB, and a
/// status above the edge's own 64 KiB limit is not sent.
pub const MAX_CONTROL_BYTES: usize = 72 * 1024;
/// The longest status carried.
pub const MAX_STATUS_BYTES: usize = 64 * 1024;
const MAX_STATE: usize = 16;

/// One control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Node → edge: a server this node owns, its state (`active`, `sleeping`, …) and, when
    /// active, its Status Response frame (empty when it could not be had).
    Status {
        server: String,
        state: String,
        status: Bytes,
    },
    /// Node → edge: this node no longer owns the server; forget what was said of it.
    Gone { server: String },
    /// Edge → node: please wake this server.
    Wake { request: u32, server: String },
    /// Edge → node: please put this server to sleep (`force`: even with players on it).
    Sleep {
        request: u32,
        server: String,
        force: bool,
    },
    /// Node → edge: request `request` was taken (`error` empty) or refused, and why.
    Done { request: u32, error: String },
}

/// What a stream's first seven bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// A player's stream: `rest` more bytes of its `Open` follow.
    Player { rest: usize },
    /// The link's control stream.
    Control,
}

/// Reads a stream's prefix: a player's `Open` or the control stream, nothing else.
pub fn stream_start(prefix: &[u8; PREFIX_BYTES]) -> Result<StreamStart, LinkFrameError> {
    if prefix[..2] == CONTROL_PREFIX[..2] {
        return match (prefix[2], *prefix == CONTROL_PREFIX) {
            (_, true) => Ok(StreamStart::Control),
            (VERSION, false) => Err(LinkFrameError::Invalid("control prefix")),
            (v, false) => Err(LinkFrameError::Version(v)),
        };
    }
    debug_assert_ne!(MAGIC[..], CONTROL_PREFIX[..2]);
    Open::rest_len(prefix).map(|rest| StreamStart::Player { rest })
}

const STATUS: u8 = 1;
const GONE: u8 = 2;
const WAKE: u8 = 3;
const SLEEP: u8 = 4;
const DONE: u8 = 5;

impl Control {
    /// The whole frame, length included; refuses what the decoder would refuse.
    pub fn encode(&self) -> Result<Bytes, LinkFrameError> {
        let mut body = BytesMut::with_capacity(64);
        match self {
            Control::Status {
                server,
                state,
                status,
            } => {
                body.put_u8(STATUS);
                put_id(&mut body, server)?;
                if state.is_empty() || state.len() > MAX_STATE {
                    return Err(LinkFrameError::Invalid("state length"));
                }
                body.put_u8(state.len() as u8);
                body.put_slice(state.as_bytes());
                if status.len() > MAX_STATUS_BYTES {
                    return Err(LinkFrameError::TooLarge(status.len()));
                }
                body.put_u32(status.len() as u32);
                body.put_slice(status);
            }
            Control::Gone { server } => {
                body.put_u8(GONE);
                put_id(&mut body, server)?;
            }
            Control::Wake { request, server } => {
                body.put_u8(WAKE);
                body.put_u32(*request);
                put_id(&mut body, server)?;
            }
            Control::Sleep {
                request,
                server,
                force,
            } => {
                body.put_u8(SLEEP);
                body.put_u32(*request);
                put_id(&mut body, server)?;
                body.put_u8(u8::from(*force));
            }
            Control::Done { request, error } => {
                body.put_u8(DONE);
                body.put_u32(*request);
                if error.len() > MAX_REASON_BYTES {
                    return Err(LinkFrameError::TooLarge(error.len()));
                }
                body.put_u16(error.len() as u16);
                body.put_slice(error.as_bytes());
            }
        }
        let mut out = BytesMut::with_capacity(4 + body.len());
        out.put_u32(body.len() as u32);
        out.put_slice(&body);
        Ok(out.freeze())
    }

    /// The body's length announced by a frame's first four bytes.
    pub fn body_len(head: [u8; 4]) -> Result<usize, LinkFrameError> {
        let len = u32::from_be_bytes(head) as usize;
        if len == 0 {
            return Err(LinkFrameError::Truncated);
        }
        if len > MAX_CONTROL_BYTES {
            return Err(LinkFrameError::TooLarge(len));
        }
        Ok(len)
    }

    /// Decodes a body (what follows the length, exactly `body_len` bytes).
    pub fn decode_body(body: &[u8]) -> Result<Control, LinkFrameError> {
        let mut r = Reader(body);
        let frame = match r.u8()? {
            STATUS => {
                let server = r.id()?;
                let state = r.text(MAX_STATE)?;
                if state.is_empty() {
                    return Err(LinkFrameError::Invalid("state length"));
                }
                let len = r.u32()? as usize;
                if len > MAX_STATUS_BYTES {
                    return Err(LinkFrameError::TooLarge(len));
                }
                let status = Bytes::copy_from_slice(r.take(len)?);
                Control::Status {
                    server,
                    state,
                    status,
                }
            }
            GONE => Control::Gone { server: r.id()? },
            WAKE => Control::Wake {
                request: r.u32()?,
                server: r.id()?,
            },
            SLEEP => Control::Sleep {
                request: r.u32()?,
                server: r.id()?,
                force: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(LinkFrameError::Invalid("force flag")),
                },
            },
            DONE => {
                let request = r.u32()?;
                let len = r.u16()? as usize;
                if len > MAX_REASON_BYTES {
                    return Err(LinkFrameError::TooLarge(len));
                }
                let error = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| LinkFrameError::Invalid("error is not UTF-8"))?
                    .to_string();
                Control::Done { request, error }
            }
            _ => return Err(LinkFrameError::Invalid("control kind")),
        };
        if !r.0.is_empty() {
            return Err(LinkFrameError::Invalid("bytes after the frame"));
        }
        Ok(frame)
    }

    /// Decodes a whole frame (length included).
    pub fn decode(frame: &[u8]) -> Result<Control, LinkFrameError> {
        let head: [u8; 4] = frame
            .get(..4)
            .and_then(|h| h.try_into().ok())
            .ok_or(LinkFrameError::Truncated)?;
        let len = Control::body_len(head)?;
        if frame.len() != 4 + len {
            return Err(LinkFrameError::Truncated);
        }
        Control::decode_body(&frame[4..])
    }
}

fn put_id(out: &mut BytesMut, id: &str) -> Result<(), LinkFrameError> {
    if id.is_empty() || id.len() > MAX_SERVER_ID {
        return Err(LinkFrameError::Invalid("server id length"));
    }
    out.put_u8(id.len() as u8);
    out.put_slice(id.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Control> {
        vec![
            Control::Status {
                server: "lobby".into(),
                state: "active".into(),
                status: Bytes::from_static(b"\x05\x00\x03{}x"),
            },
            Control::Status {
                server: "lobby".into(),
                state: "sleeping".into(),
                status: Bytes::new(),
            },
            Control::Gone {
                server: "lobby".into(),
            },
            Control::Wake {
                request: 7,
                server: "lobby".into(),
            },
            Control::Sleep {
                request: u32::MAX,
                server: "lobby".into(),
                force: true,
            },
            Control::Done {
                request: 7,
                error: String::new(),
            },
            Control::Done {
                request: 8,
                error: "lobby is owned by node-b".into(),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for c in all() {
            assert_eq!(Control::decode(&c.encode().unwrap()), Ok(c));
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        let frame = all()[0].encode().unwrap();
        assert_eq!(
            Control::decode(&frame[..frame.len() - 1]),
            Err(LinkFrameError::Truncated)
        );
        assert!(matches!(
            Control::body_len([0xff, 0xff, 0xff, 0xff]),
            Err(LinkFrameError::TooLarge(_))
        ));
        assert_eq!(Control::body_len([0; 4]), Err(LinkFrameError::Truncated));
        assert_eq!(
            Control::decode_body(&[9]),
            Err(LinkFrameError::Invalid("control kind"))
        );
        let mut trailing = frame.to_vec();
        trailing.push(0);
        trailing[3] += 1;
        assert_eq!(
            Control::decode(&trailing),
            Err(LinkFrameError::Invalid("bytes after the frame"))
        );
        let huge = Control::Status {
            server: "lobby".into(),
            state: "active".into(),
            status: Bytes::from(vec![0; MAX_STATUS_BYTES + 1]),
        };
        assert!(matches!(huge.encode(), Err(LinkFrameError::TooLarge(_))));
        let nameless = Control::Gone {
            server: String::new(),
        };
        assert!(nameless.encode().is_err());
    }

    #[test]
    fn a_prefix_says_player_or_control() {
        assert_eq!(stream_start(&CONTROL_PREFIX), Ok(StreamStart::Control));
        let open = Open {
            server: "lobby".into(),
            player: "203.0.113.7:1".parse().unwrap(),
            join: Bytes::new(),
        }
        .encode()
        .unwrap();
        let prefix: [u8; PREFIX_BYTES] = open[..PREFIX_BYTES].try_into().unwrap();
        assert_eq!(
            stream_start(&prefix),
            Ok(StreamStart::Player {
                rest: open.len() - PREFIX_BYTES
            })
        );
        let mut v2 = CONTROL_PREFIX;
        v2[2] = 2;
        assert_eq!(stream_start(&v2), Err(LinkFrameError::Version(2)));
        let mut long = CONTROL_PREFIX;
        long[6] = 1;
        assert!(stream_start(&long).is_err());
        assert_eq!(stream_start(b"GET / H"), Err(LinkFrameError::Magic));
    }

    #[test]
    fn the_largest_status_fits_a_frame() {
        let c = Control::Status {
            server: "x".repeat(MAX_SERVER_ID),
            state: "x".repeat(MAX_STATE),
            status: Bytes::from(vec![0; MAX_STATUS_BYTES]),
        };
        assert_eq!(Control::decode(&c.encode().unwrap()), Ok(c));
    }
}
