//! The two small frames of the edge↔node link (QUIC, one stream per player): the edge's
//! [`Open`] at the start of a stream says which server the player wants, who the player
//! really is and what they already sent; the node's [`Reply`] says whether it connected
//! the server's backend, or why not, so the edge can tell the player instead of dropping
//! them. Pure and bounded, like the rest of this crate, so it is fuzzed.
//!
//! `Open` = `"WL"` · version 1 · u32 length of the rest (≤ [`MAX_OPEN_BYTES`]) · server id
//! (u8 length + bytes, 1..=64) · the player's address (u8 family 4|6, the IP, u16 port) ·
//! the join bytes (u32 length + bytes: the handshake as the backend should see it, Login
//! Start and any bytes after). Integers are big-endian.
//! `Reply` = u8 code · u16 length + UTF-8 reason (≤ [`MAX_REASON_BYTES`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// What every Open starts with.
pub const MAGIC: [u8; 2] = *b"WL";
pub const VERSION: u8 = 1;
/// Magic, version and the length: what is read before the rest's size is known.
pub const PREFIX_BYTES: usize = 7;
/// The most an Open's rest may hold: a handshake, Login Start and a read-ahead are far
/// smaller; anything larger is not a player.
pub const MAX_OPEN_BYTES: usize = 64 * 1024;
/// The longest server id (the API's rule).
pub const MAX_SERVER_ID: usize = 64;
pub const MAX_REASON_BYTES: usize = 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LinkFrameError {
    #[error("not a link stream (bad magic)")]
    Magic,
    #[error("link frame version {0} (this side speaks {VERSION})")]
    Version(u8),
    #[error("link frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("link frame truncated")]
    Truncated,
    #[error("link frame: {0}")]
    Invalid(&'static str),
}

/// The start of a player's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub server: String,
    /// The player's real address (the edge's client, or what a trusted PROXY header said).
    pub player: SocketAddr,
    /// Handshake, Login Start and read-ahead, exactly as the backend should receive them.
    pub join: Bytes,
}

impl Open {
    /// Encodes the whole frame; refuses what the decoder would refuse.
    pub fn encode(&self) -> Result<Bytes, LinkFrameError> {
        if self.server.is_empty() || self.server.len() > MAX_SERVER_ID {
            return Err(LinkFrameError::Invalid("server id length"));
        }
        let mut rest = BytesMut::with_capacity(64 + self.join.len());
        rest.put_u8(self.server.len() as u8);
        rest.put_slice(self.server.as_bytes());
        match self.player.ip() {
            IpAddr::V4(ip) => {
                rest.put_u8(4);
                rest.put_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                rest.put_u8(6);
                rest.put_slice(&ip.octets());
            }
        }
        rest.put_u16(self.player.port());
        rest.put_u32(self.join.len() as u32);
        rest.put_slice(&self.join);
        if rest.len() > MAX_OPEN_BYTES {
            return Err(LinkFrameError::TooLarge(rest.len()));
        }
        let mut out = BytesMut::with_capacity(PREFIX_BYTES + rest.len());
        out.put_slice(&MAGIC);
        out.put_u8(VERSION);
        out.put_u32(rest.len() as u32);
        out.put_slice(&rest);
        Ok(out.freeze())
    }

    /// The length of the rest announced by the first [`PREFIX_BYTES`] bytes.
    pub fn rest_len(prefix: &[u8; PREFIX_BYTES]) -> Result<usize, LinkFrameError> {
        if prefix[..2] != MAGIC {
            return Err(LinkFrameError::Magic);
        }
        if prefix[2] != VERSION {
            return Err(LinkFrameError::Version(prefix[2]));
        }
        let len = u32::from_be_bytes([prefix[3], prefix[4], prefix[5], prefix[6]]) as usize;
        if len > MAX_OPEN_BYTES {
            return Err(LinkFrameError::TooLarge(len));
        }
        Ok(len)
    }

    /// Decodes the rest (what follows the prefix, exactly `rest_len` bytes).
    pub fn decode_rest(rest: &[u8]) -> Result<Open, LinkFrameError> {
        let mut r = Reader(rest);
        let id_len = r.u8()? as usize;
        if id_len == 0 || id_len > MAX_SERVER_ID {
            return Err(LinkFrameError::Invalid("server id length"));
        }
        let server = std::str::from_utf8(r.take(id_len)?)
            .map_err(|_| LinkFrameError::Invalid("server id is not UTF-8"))?
            .to_string();
        let ip = match r.u8()? {
            4 => {
                let b = r.take(4)?;
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(r.take(16)?);
                IpAddr::V6(Ipv6Addr::from(o))
            }
            _ => return Err(LinkFrameError::Invalid("address family")),
        };
        let port = r.u16()?;
        let join_len = r.u32()? as usize;
        let join = Bytes::copy_from_slice(r.take(join_len)?);
        if !r.0.is_empty() {
            return Err(LinkFrameError::Invalid("bytes after the join"));
        }
        Ok(Open {
            server,
            player: SocketAddr::new(ip, port),
            join,
        })
    }

    /// Decodes a whole frame (prefix included).
    pub fn decode(frame: &[u8]) -> Result<Open, LinkFrameError> {
        let prefix: &[u8; PREFIX_BYTES] = frame
            .get(..PREFIX_BYTES)
            .and_then(|p| p.try_into().ok())
            .ok_or(LinkFrameError::Truncated)?;
        let len = Open::rest_len(prefix)?;
        let rest = &frame[PREFIX_BYTES..];
        if rest.len() != len {
            return Err(LinkFrameError::Truncated);
        }
        Open::decode_rest(rest)
    }
}

/// The node's answer, first on its side of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplyCode {
    /// The backend is connected; its bytes follow.
    Connected = 0,
    /// No server of that id here.
    UnknownServer = 1,
    /// The backend refused or did not answer.
    Unreachable = 2,
    /// The node is not (or no longer) where that server runs.
    NotHere = 3,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: ReplyCode,
    pub reason: String,
}

impl Reply {
    pub fn connected() -> Reply {
        Reply {
            code: ReplyCode::Connected,
            reason: String::new(),
        }
    }

    /// The frame; a reason is cut (on a character boundary) to fit.
    pub fn encode(&self) -> Bytes {
        let mut reason = self.reason.as_str();
        while reason.len() > MAX_REASON_BYTES {
            let mut cut = MAX_REASON_BYTES;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason = &reason[..cut];
        }
        let mut out = BytesMut::with_capacity(3 + reason.len());
        out.put_u8(self.code as u8);
        out.put_u16(reason.len() as u16);
        out.put_slice(reason.as_bytes());
        out.freeze()
    }

    /// The reason's length announced by the first three bytes, and the code.
    pub fn head(head: [u8; 3]) -> Result<(ReplyCode, usize), LinkFrameError> {
        let code = match head[0] {
            0 => ReplyCode::Connected,
            1 => ReplyCode::UnknownServer,
            2 => ReplyCode::Unreachable,
            3 => ReplyCode::NotHere,
            _ => return Err(LinkFrameError::Invalid("reply code")),
        };
        let len = u16::from_be_bytes([head[1], head[2]]) as usize;
        if len > MAX_REASON_BYTES {
            return Err(LinkFrameError::TooLarge(len));
        }
        Ok((code, len))
    }

    /// Decodes a whole frame.
    pub fn decode(frame: &[u8]) -> Result<Reply, LinkFrameError> {
        let head: [u8; 3] = frame
            .get(..3)
            .and_then(|h| h.try_into().ok())
            .ok_or(LinkFrameError::Truncated)?;
        let (code, len) = Reply::head(head)?;
        if frame.len() != 3 + len {
            return Err(LinkFrameError::Truncated);
        }
        let reason = std::str::from_utf8(&frame[3..])
            .map_err(|_| LinkFrameError::Invalid("reason is not UTF-8"))?
            .to_string();
        Ok(Reply { code, reason })
    }
}

/// Reads the fields of a frame, refusing to read past its end.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], LinkFrameError> {
        if self.0.len() < n {
            return Err(LinkFrameError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, LinkFrameError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, LinkFrameError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, LinkFrameError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn text(&mut self, max: usize) -> Result<String, LinkFrameError> {
        let len = self.u8()? as usize;
        if len > max {
            return Err(LinkFrameError::Invalid("string length"));
        }
        std::str::from_utf8(self.take(len)?)
            .map(str::to_string)
            .map_err(|_| LinkFrameError::Invalid("string is not UTF-8"))
    }
    pub(crate) fn id(&mut self) -> Result<String, LinkFrameError> {
        let id = self.text(MAX_SERVER_ID)?;
        if id.is_empty() {
            return Err(LinkFrameError::Invalid("server id length"));
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Open {
        Open {
            server: "lobby".into(),
            player: "203.0.113.7:51234".parse().unwrap(),
            join: Bytes::from_static(b"\x10\x00handshake-and-login"),
        }
    }

    #[test]
    fn open_round_trips_v4_and_v6() {
        let o = open();
        assert_eq!(Open::decode(&o.encode().unwrap()), Ok(o.clone()));
        let v6 = Open {
            player: "[2001:db8::1]:25565".parse().unwrap(),
            ..o
        };
        assert_eq!(Open::decode(&v6.encode().unwrap()), Ok(v6));
    }

    #[test]
    fn open_refuses_what_is_not_a_player() {
        let frame = open().encode().unwrap();
        assert_eq!(
            Open::decode(b"GET / HTTP/1.1\r\n"),
            Err(LinkFrameError::Magic)
        );
        let mut v2 = frame.to_vec();
        v2[2] = 2;
        assert_eq!(Open::decode(&v2), Err(LinkFrameError::Version(2)));
        assert_eq!(
            Open::decode(&frame[..frame.len() - 1]),
            Err(LinkFrameError::Truncated)
        );
        let huge = [b'W', b'L', 1, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Open::rest_len(&huge),
            Err(LinkFrameError::TooLarge(_))
        ));
        let long = Open {
            server: "x".repeat(65),
            ..open()
        };
        assert!(long.encode().is_err());
        let big = Open {
            join: Bytes::from(vec![0u8; MAX_OPEN_BYTES]),
            ..open()
        };
        assert!(matches!(big.encode(), Err(LinkFrameError::TooLarge(_))));
    }

    #[test]
    fn replies_round_trip_and_cut_long_reasons() {
        let r = Reply {
            code: ReplyCode::Unreachable,
            reason: "lobby's backend refused the connection".into(),
        };
        assert_eq!(Reply::decode(&r.encode()), Ok(r));
        assert_eq!(
            Reply::decode(&Reply::connected().encode()),
            Ok(Reply::connected())
        );
        let long = Reply {
            code: ReplyCode::NotHere,
            reason: "é".repeat(MAX_REASON_BYTES),
        };
        let back = Reply::decode(&long.encode()).unwrap();
        assert!(back.reason.len() <= MAX_REASON_BYTES && back.reason.starts_with('é'));
        assert_eq!(
            Reply::decode(&[9, 0, 0]),
            Err(LinkFrameError::Invalid("reply code"))
        );
    }
}
