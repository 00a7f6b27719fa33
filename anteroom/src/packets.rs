//! The handful of login and configuration packets the anteroom writes and reads.
//!
//! Framing and field encoding come from `warden_wire`; ids from [`crate::ids`]. No
//! compression and no encryption: the anteroom logs players in offline, because the backend
//! authenticates them again after the Transfer.

use bytes::{Bytes, BytesMut};
use warden_wire::{PacketReader, PacketWriter, WireError};

use warden_wire::version;

use crate::ids;
use crate::nbt::Tag;
use crate::text;

/// Login Success with no profile properties.
pub fn login_success(protocol: i32, uuid: u128, name: &str) -> Bytes {
    let w = PacketWriter::new(ids::LOGIN_SUCCESS)
        .raw(&uuid.to_be_bytes())
        .string(name)
        .varint(0);
    if protocol < version::V1_21_2 {
        // strictErrorHandling = false (766–767 only).
        w.raw(&[0]).into_frame()
    } else {
        w.into_frame()
    }
}

/// Configuration keep-alive.
pub fn keep_alive(id: i64) -> Bytes {
    PacketWriter::new(ids::CONFIG_KEEP_ALIVE)
        .i64(id)
        .into_frame()
}

/// Store Cookie: `key` must be an identifier (`namespace:path`); `value` ≤ 5120 bytes.
pub fn store_cookie(key: &str, value: &[u8]) -> Bytes {
    PacketWriter::new(ids::CONFIG_STORE_COOKIE)
        .string(key)
        .varint(value.len() as i32)
        .raw(value)
        .into_frame()
}

/// Transfer to `host:port` (the port is a VarInt here, not a u16).
pub fn transfer(host: &str, port: u16) -> Bytes {
    PacketWriter::new(ids::CONFIG_TRANSFER)
        .string(host)
        .varint(i32::from(port))
        .into_frame()
}

/// Configuration Disconnect with `reason` as a text component.
pub fn disconnect(reason: &str) -> Bytes {
    with_nbt(ids::CONFIG_DISCONNECT, &text::component(reason))
}

/// Show Dialog (771+) with an inline dialog.
pub fn show_dialog(dialog: &Tag) -> Bytes {
    with_nbt(ids::CONFIG_SHOW_DIALOG, dialog)
}

fn with_nbt(id: i32, tag: &Tag) -> Bytes {
    let mut nbt = BytesMut::with_capacity(256);
    tag.write_anonymous(&mut nbt);
    PacketWriter::new(id).raw(&nbt).into_frame()
}

/// A serverbound configuration packet, as far as the anteroom cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Serverbound {
    KeepAlive(i64),
    /// Client information, brand, known packs, … read and ignored.
    Other(i32),
}

/// Classifies a configuration packet body; only keep-alive replies are decoded.
pub fn parse_config(body: &[u8]) -> Result<Serverbound, WireError> {
    let mut r = PacketReader::new(body);
    let id = r.varint()?;
    if id == ids::CONFIG_KEEP_ALIVE_REPLY {
        let v = r.i64()?;
        r.finish()?;
        Ok(Serverbound::KeepAlive(v))
    } else {
        Ok(Serverbound::Other(id))
    }
}

/// Checks that a login-state body is `login_acknowledged`.
pub fn parse_login_acknowledged(body: &[u8]) -> Result<(), WireError> {
    let mut r = PacketReader::new(body);
    let id = r.varint()?;
    if id != ids::LOGIN_ACKNOWLEDGED {
        return Err(WireError::UnexpectedPacket {
            got: id,
            expected: ids::LOGIN_ACKNOWLEDGED,
        });
    }
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_wire::FrameDecoder;

    fn body(frame: &Bytes) -> Bytes {
        let mut d = FrameDecoder::new();
        d.extend(frame);
        d.next_frame(1 << 20).unwrap().unwrap()
    }

    #[test]
    fn login_success_layouts() {
        let uuid = 0x0011_2233_4455_6677_8899_aabb_ccdd_eeffu128;
        for (protocol, strict) in [(766, true), (767, true), (768, false), (775, false)] {
            let b = body(&login_success(protocol, uuid, "Alex"));
            let mut r = PacketReader::new(&b);
            assert_eq!(r.varint().unwrap(), 0x02);
            assert_eq!(r.uuid().unwrap(), uuid);
            assert_eq!(r.string(16).unwrap(), "Alex");
            assert_eq!(r.varint().unwrap(), 0);
            if strict {
                assert!(!r.bool().unwrap());
            }
            r.finish().unwrap();
        }
    }

    #[test]
    fn cookie_and_transfer() {
        let b = body(&store_cookie("warden:ticket", &[1, 2, 3]));
        let mut r = PacketReader::new(&b);
        assert_eq!(r.varint().unwrap(), 0x0A);
        assert_eq!(r.string(32767).unwrap(), "warden:ticket");
        assert_eq!(r.byte_array(5120).unwrap(), &[1, 2, 3]);
        r.finish().unwrap();
        let b = body(&transfer("play.example.com", 25565));
        let mut r = PacketReader::new(&b);
        assert_eq!(r.varint().unwrap(), 0x0B);
        assert_eq!(r.string(32767).unwrap(), "play.example.com");
        assert_eq!(r.varint().unwrap(), 25565);
        r.finish().unwrap();
    }

    #[test]
    fn serverbound() {
        let ka = body(&PacketWriter::new(4).i64(-7).into_frame());
        assert_eq!(parse_config(&ka), Ok(Serverbound::KeepAlive(-7)));
        assert_eq!(parse_config(&[0x02, 1, 2]), Ok(Serverbound::Other(2)));
        assert!(parse_config(&[0x04, 1]).is_err());
        assert!(parse_config(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert_eq!(parse_login_acknowledged(&[0x03]), Ok(()));
        assert!(parse_login_acknowledged(&[0x03, 0]).is_err());
        assert!(parse_login_acknowledged(&[0x00]).is_err());
    }
}
