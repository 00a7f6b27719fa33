//! Configuration-state packets: what the anteroom writes while a player waits, and the
//! keep-alive it reads back.
//!
//! Ids: PrismarineJS minecraft-data 3.117.0, `data/pc/<version>/protocol.json`,
//! `configuration` mappings of 1.20.6, 1.21.1, 1.21.3, 1.21.4, 1.21.5, 1.21.6, 1.21.8,
//! 1.21.9, 1.21.11 and 26.1 (protocols 766–775): the same in all of them. Text and dialogs
//! travel as anonymous NBT ([`crate::nbt`]); Warden writes those but never reads them.

use crate::nbt::Tag;
use crate::packets::{Decode, Encode, Packet, PacketReader, PacketWriter};
use crate::WireError;

/// Longest Transfer host Warden reads (the protocol's string limit).
const MAX_HOST_CHARS: usize = 32767;

/// `keep_alive`, both ways (the same id and layout): the server's id, echoed by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    pub id: i64,
}

impl Packet for KeepAlive {
    const ID: i32 = 0x04;
}

impl Encode for KeepAlive {
    fn write_fields(&self, w: PacketWriter) -> PacketWriter {
        w.i64(self.id)
    }
}

impl Decode<'_> for KeepAlive {
    fn read_fields(r: &mut PacketReader<'_>) -> Result<Self, WireError> {
        Ok(Self { id: r.i64()? })
    }
}

/// Clientbound `store_cookie`: `key` is an identifier (`namespace:path`), the payload at
/// most [`crate::login::MAX_COOKIE_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCookie<'a> {
    pub key: &'a str,
    pub payload: &'a [u8],
}

impl Packet for StoreCookie<'_> {
    const ID: i32 = 0x0A;
}

impl Encode for StoreCookie<'_> {
    fn write_fields(&self, w: PacketWriter) -> PacketWriter {
        w.string(self.key).byte_array(self.payload)
    }
}

impl<'a> Decode<'a> for StoreCookie<'a> {
    fn read_fields(r: &mut PacketReader<'a>) -> Result<Self, WireError> {
        Ok(Self {
            key: r.string(crate::login::MAX_COOKIE_KEY_CHARS)?,
            payload: r.byte_array(crate::login::MAX_COOKIE_LEN)?,
        })
    }
}

/// Clientbound `transfer`: reconnect to `host:port` (the port is a VarInt here, not a u16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer<'a> {
    pub host: &'a str,
    pub port: u16,
}

impl Packet for Transfer<'_> {
    const ID: i32 = 0x0B;
}

impl Encode for Transfer<'_> {
    fn write_fields(&self, w: PacketWriter) -> PacketWriter {
        w.string(self.host).varint(i32::from(self.port))
    }
}

impl<'a> Decode<'a> for Transfer<'a> {
    fn read_fields(r: &mut PacketReader<'a>) -> Result<Self, WireError> {
        let host = r.string(MAX_HOST_CHARS)?;
        let port = u16::try_from(r.varint()?).map_err(|_| WireError::BadLength)?;
        Ok(Self { host, port })
    }
}

/// Clientbound `disconnect`: the reason as a text component in anonymous NBT.
#[derive(Debug, Clone, PartialEq)]
pub struct Disconnect<'a> {
    pub reason: &'a Tag,
}

impl Packet for Disconnect<'_> {
    const ID: i32 = 0x02;
}

impl Encode for Disconnect<'_> {
    fn write_fields(&self, w: PacketWriter) -> PacketWriter {
        w.nbt(self.reason)
    }
}

/// Clientbound `show_dialog` (1.21.6+, [`crate::version::V1_21_6`]): the dialog itself,
/// inline, as anonymous NBT (in play it is a registry holder instead).
#[derive(Debug, Clone, PartialEq)]
pub struct ShowDialog<'a> {
    pub dialog: &'a Tag,
}

impl Packet for ShowDialog<'_> {
    const ID: i32 = 0x12;
}

impl Encode for ShowDialog<'_> {
    fn write_fields(&self, w: PacketWriter) -> PacketWriter {
        w.nbt(self.dialog)
    }
}

/// A serverbound configuration packet, as far as Warden cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Serverbound {
    KeepAlive(KeepAlive),
    /// Client information, brand, known packs, … read and ignored.
    Other(i32),
}

impl Serverbound {
    /// Classifies a configuration packet body; only keep-alive replies are decoded.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let mut r = PacketReader::new(body);
        let id = r.varint()?;
        if id != KeepAlive::ID {
            return Ok(Serverbound::Other(id));
        }
        let keep_alive = KeepAlive::read_fields(&mut r)?;
        r.finish()?;
        Ok(Serverbound::KeepAlive(keep_alive))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::frame::body_of as body;

    #[test]
    fn cookie_and_transfer() {
        let cookie = StoreCookie {
            key: "warden:ticket",
            payload: &[1, 2, 3],
        };
        let b = body(&cookie.frame());
        let mut r = PacketReader::new(&b);
        assert_eq!(r.varint().unwrap(), 0x0A);
        assert_eq!(r.string(32767).unwrap(), "warden:ticket");
        assert_eq!(r.byte_array(5120).unwrap(), &[1, 2, 3]);
        r.finish().unwrap();
        assert_eq!(StoreCookie::decode(&b), Ok(cookie));

        let transfer = Transfer {
            host: "play.example.com",
            port: 25565,
        };
        let b = body(&transfer.frame());
        let mut r = PacketReader::new(&b);
        assert_eq!(r.varint().unwrap(), 0x0B);
        assert_eq!(r.string(32767).unwrap(), "play.example.com");
        assert_eq!(r.varint().unwrap(), 25565);
        r.finish().unwrap();
        assert_eq!(Transfer::decode(&b), Ok(transfer));
        let bad_port = PacketWriter::new(0x0B)
            .string("h")
            .varint(70_000)
            .into_frame();
        assert_eq!(
            Transfer::decode(&body(&bad_port)),
            Err(WireError::BadLength)
        );
    }

    #[test]
    fn nbt_packets() {
        let reason = Tag::Compound(vec![("text", Tag::String("bye".into()))]);
        let b = body(&Disconnect { reason: &reason }.frame());
        assert_eq!(b[0], 0x02);
        let mut nbt = bytes::BytesMut::new();
        reason.write_anonymous(&mut nbt);
        assert_eq!(&b[1..], &nbt[..]);
        let b = body(&ShowDialog { dialog: &reason }.frame());
        assert_eq!(b[0], 0x12);
        assert_eq!(&b[1..], &nbt[..]);
    }

    #[test]
    fn keep_alive_and_serverbound() {
        let ka = body(&KeepAlive { id: -7 }.frame());
        assert_eq!(KeepAlive::decode(&ka), Ok(KeepAlive { id: -7 }));
        assert_eq!(
            Serverbound::decode(&ka),
            Ok(Serverbound::KeepAlive(KeepAlive { id: -7 }))
        );
        assert_eq!(
            Serverbound::decode(&[0x02, 1, 2]),
            Ok(Serverbound::Other(2))
        );
        assert!(Serverbound::decode(&[0x04, 1]).is_err());
        assert!(Serverbound::decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
