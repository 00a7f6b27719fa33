//! The few packets Warden reads or writes itself.
//!
//! Layouts (fields and packet ids) follow the protocol documentation and PrismarineJS
//! minecraft-data; ids in the handshake, status and login states have not changed since 1.7.

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::framed;
use super::varint::{read_varint, write_varint, VarIntError};
use super::WireError;

/// Reads protocol fields from a packet body, never past its end.
pub struct PacketReader<'a> {
    buf: &'a [u8],
}

impl<'a> PacketReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Reads the packet id and checks it is `expected`.
    pub fn expect_id(&mut self, expected: i32) -> Result<(), WireError> {
        let got = self.varint()?;
        if got != expected {
            return Err(WireError::UnexpectedPacket { got, expected });
        }
        Ok(())
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn varint(&mut self) -> Result<i32, WireError> {
        match read_varint(self.buf) {
            Ok((v, n)) => {
                self.buf = &self.buf[n..];
                Ok(v)
            }
            Err(VarIntError::Incomplete) => Err(WireError::Truncated),
            Err(VarIntError::TooLong) => Err(WireError::VarIntTooLong),
        }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn bool(&mut self) -> Result<bool, WireError> {
        Ok(self.u8()? != 0)
    }

    pub fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i64(&mut self) -> Result<i64, WireError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn uuid(&mut self) -> Result<u128, WireError> {
        let b = self.bytes(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(u128::from_be_bytes(a))
    }

    /// A length-prefixed UTF-8 string of at most `max_chars` characters (the protocol
    /// counts UTF-16 units; for the short strings read here chars are an upper bound).
    pub fn string(&mut self, max_chars: usize) -> Result<&'a str, WireError> {
        let len = self.varint()?;
        if len < 0 {
            return Err(WireError::BadLength);
        }
        let len = len as usize;
        // A char takes at most 4 bytes in UTF-8; reject before touching the bytes.
        if len > max_chars * 4 {
            return Err(WireError::StringTooLong {
                len,
                max: max_chars,
            });
        }
        let raw = self.bytes(len)?;
        let s = std::str::from_utf8(raw).map_err(|_| WireError::BadUtf8)?;
        let chars = s.chars().count();
        if chars > max_chars {
            return Err(WireError::StringTooLong {
                len: chars,
                max: max_chars,
            });
        }
        Ok(s)
    }

    /// A length-prefixed byte array of at most `max` bytes.
    pub fn byte_array(&mut self, max: usize) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        if len < 0 || len as usize > max {
            return Err(WireError::BadLength);
        }
        self.bytes(len as usize)
    }

    pub fn finish(&self) -> Result<(), WireError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(WireError::TrailingBytes(n)),
        }
    }
}

/// Builds a packet body (id + fields).
#[derive(Default)]
pub struct PacketWriter {
    buf: BytesMut,
}

impl PacketWriter {
    pub fn new(id: i32) -> Self {
        let mut w = Self {
            buf: BytesMut::with_capacity(64),
        };
        write_varint(&mut w.buf, id);
        w
    }

    pub fn varint(mut self, v: i32) -> Self {
        write_varint(&mut self.buf, v);
        self
    }

    pub fn string(mut self, s: &str) -> Self {
        write_varint(&mut self.buf, s.len() as i32);
        self.buf.put_slice(s.as_bytes());
        self
    }

    pub fn u16(mut self, v: u16) -> Self {
        self.buf.put_u16(v);
        self
    }

    pub fn i64(mut self, v: i64) -> Self {
        self.buf.put_i64(v);
        self
    }

    pub fn raw(mut self, b: &[u8]) -> Self {
        self.buf.put_slice(b);
        self
    }

    /// A VarInt-prefixed byte array.
    pub fn byte_array(mut self, b: &[u8]) -> Self {
        write_varint(&mut self.buf, b.len() as i32);
        self.buf.put_slice(b);
        self
    }

    /// A tag as anonymous network NBT.
    pub fn nbt(mut self, tag: &crate::nbt::Tag) -> Self {
        tag.write_anonymous(&mut self.buf);
        self
    }

    /// The body framed with its length prefix, ready for the wire.
    pub fn into_frame(self) -> Bytes {
        framed(&self.buf)
    }
}

/// A packet with a fixed id in its protocol state: the same in every version Warden speaks
/// (see the module that defines it for the versions checked).
pub trait Packet {
    const ID: i32;
}

/// A packet Warden writes.
pub trait Encode: Packet {
    /// Writes the fields that follow the packet id.
    fn write_fields(&self, w: PacketWriter) -> PacketWriter;

    /// The whole packet, framed for the wire.
    fn frame(&self) -> Bytes {
        self.write_fields(PacketWriter::new(Self::ID)).into_frame()
    }
}

/// A packet Warden reads. Every field is bounded; nothing panics on any input.
pub trait Decode<'a>: Packet + Sized {
    /// Reads the fields that follow the packet id.
    fn read_fields(r: &mut PacketReader<'a>) -> Result<Self, WireError>;

    /// Decodes a whole body: the expected id, the fields, and nothing after them.
    fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = PacketReader::new(body);
        r.expect_id(Self::ID)?;
        let packet = Self::read_fields(&mut r)?;
        r.finish()?;
        Ok(packet)
    }
}

/// What the client wants after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Status = 1,
    Login = 2,
    /// A client arriving from a Transfer packet (1.20.5+).
    Transfer = 3,
}

impl Intent {
    pub fn from_id(id: i32) -> Result<Self, WireError> {
        match id {
            1 => Ok(Intent::Status),
            2 => Ok(Intent::Login),
            3 => Ok(Intent::Transfer),
            other => Err(WireError::BadIntent(other)),
        }
    }

    pub fn is_login(self) -> bool {
        matches!(self, Intent::Login | Intent::Transfer)
    }
}

/// The first packet of every modern connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub protocol: i32,
    /// The address as the client sent it, markers and suffixes included.
    pub address: String,
    pub port: u16,
    pub intent: Intent,
}

/// Longest address accepted in the handshake field. Vanilla allows 255 characters; Forge
/// markers and TCPShield-style `///ip:port///ts///sig` suffixes need more, and the frame
/// limit bounds it anyway. The routing key itself is capped at 255 after normalization.
pub const MAX_ADDRESS_CHARS: usize = 1024;

impl Handshake {
    /// Parses a handshake body (packet id 0x00 included).
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut r = PacketReader::new(body);
        r.expect_id(0x00)?;
        let protocol = r.varint()?;
        let address = r.string(MAX_ADDRESS_CHARS)?.to_owned();
        let port = r.u16()?;
        let intent = Intent::from_id(r.varint()?)?;
        r.finish()?;
        Ok(Self {
            protocol,
            address,
            port,
            intent,
        })
    }

    /// The handshake as a framed packet.
    pub fn encode(&self) -> Bytes {
        PacketWriter::new(0x00)
            .varint(self.protocol)
            .string(&self.address)
            .u16(self.port)
            .varint(self.intent as i32)
            .into_frame()
    }
}

/// The player's name and, where the version sends it, UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginStart {
    pub name: String,
    pub uuid: Option<u128>,
}

impl LoginStart {
    /// Parses a Login Start body for the client's `protocol` (1.7 through 26.x).
    pub fn parse(body: &[u8], protocol: i32) -> Result<Self, WireError> {
        use crate::version::{V1_19, V1_19_1, V1_19_3, V1_20_2};
        let mut r = PacketReader::new(body);
        r.expect_id(0x00)?;
        let name = r.string(16)?.to_owned();
        let uuid = if protocol >= V1_20_2 {
            Some(r.uuid()?)
        } else if protocol >= V1_19_3 {
            if r.bool()? {
                Some(r.uuid()?)
            } else {
                None
            }
        } else if protocol >= V1_19 {
            if r.bool()? {
                let _timestamp = r.i64()?;
                let _public_key = r.byte_array(512)?;
                let _signature = r.byte_array(4096)?;
            }
            if protocol >= V1_19_1 && r.bool()? {
                Some(r.uuid()?)
            } else {
                None
            }
        } else {
            None
        };
        r.finish()?;
        Ok(Self { name, uuid })
    }
}

/// Login-state Disconnect (id 0x00) carrying a JSON text component.
pub fn disconnect_packet(message: &str) -> Bytes {
    let json = serde_json::json!({ "text": message }).to_string();
    PacketWriter::new(0x00).string(&json).into_frame()
}

/// Status Response (id 0x00) with the given JSON document.
pub fn status_response_packet(json: &str) -> Bytes {
    PacketWriter::new(0x00).string(json).into_frame()
}

/// Pong (id 0x01) echoing the client's payload.
pub fn pong_packet(payload: i64) -> Bytes {
    PacketWriter::new(0x01).i64(payload).into_frame()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::frame::body_of as body;

    #[test]
    fn handshake_roundtrip() {
        let h = Handshake {
            protocol: 767,
            address: "survival.play.example.com".into(),
            port: 25565,
            intent: Intent::Login,
        };
        assert_eq!(Handshake::parse(&body(&h.encode())).unwrap(), h);
    }

    #[test]
    fn handshake_rejects_bad_intent_and_trailing() {
        let mut b = PacketWriter::new(0)
            .varint(47)
            .string("a")
            .u16(1)
            .varint(7)
            .into_frame();
        assert_eq!(Handshake::parse(&body(&b)), Err(WireError::BadIntent(7)));
        b = PacketWriter::new(0)
            .varint(47)
            .string("a")
            .u16(1)
            .varint(1)
            .raw(&[1])
            .into_frame();
        assert_eq!(
            Handshake::parse(&body(&b)),
            Err(WireError::TrailingBytes(1))
        );
        b = PacketWriter::new(5).into_frame();
        assert!(matches!(
            Handshake::parse(&body(&b)),
            Err(WireError::UnexpectedPacket { .. })
        ));
    }

    #[test]
    fn login_start_every_layout() {
        let uuid: u128 = 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef;
        let old = PacketWriter::new(0).string("Steve").into_frame();
        assert_eq!(LoginStart::parse(&body(&old), 47).unwrap().name, "Steve");
        let v119 = PacketWriter::new(0).string("Alex").raw(&[0]).into_frame();
        assert_eq!(LoginStart::parse(&body(&v119), 759).unwrap().uuid, None);
        let mut u = uuid.to_be_bytes().to_vec();
        u.insert(0, 1);
        let v1191 = PacketWriter::new(0)
            .string("Alex")
            .raw(&[0])
            .raw(&u)
            .into_frame();
        assert_eq!(
            LoginStart::parse(&body(&v1191), 760).unwrap().uuid,
            Some(uuid)
        );
        let v1193 = PacketWriter::new(0).string("Alex").raw(&u).into_frame();
        assert_eq!(
            LoginStart::parse(&body(&v1193), 763).unwrap().uuid,
            Some(uuid)
        );
        let v1202 = PacketWriter::new(0)
            .string("Alex")
            .raw(&uuid.to_be_bytes())
            .into_frame();
        assert_eq!(
            LoginStart::parse(&body(&v1202), 775).unwrap().uuid,
            Some(uuid)
        );
        let too_long = PacketWriter::new(0)
            .string("ThisNameIsWayTooLong")
            .into_frame();
        assert!(LoginStart::parse(&body(&too_long), 47).is_err());
    }

    #[test]
    fn disconnect_is_json_component() {
        let f = disconnect_packet("Server \"x\" is down");
        let b = body(&f);
        let mut r = PacketReader::new(&b);
        assert_eq!(r.varint().unwrap(), 0);
        let v: serde_json::Value = serde_json::from_str(r.string(32767).unwrap()).unwrap();
        assert_eq!(v["text"], "Server \"x\" is down");
    }
}
