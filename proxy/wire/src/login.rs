//! Login-state packets beyond the handshake and Login Start: the cookie exchange a returning
//! player goes through at the edge, and the offline login the anteroom performs.
//!
//! Ids: PrismarineJS minecraft-data 3.117.0, `data/pc/<version>/protocol.json`, `login`
//! mappings of 1.20.6, 1.21.1, 1.21.3, 1.21.4, 1.21.5, 1.21.6, 1.21.8, 1.21.9, 1.21.11 and
//! 26.1 (protocols 766–775): the same in all of them. Cookies exist from 1.20.5
//! ([`crate::version::V1_20_5`]).

use crate::packets::{Decode, Encode, Packet, PacketReader, PacketWriter};
use crate::version;
use crate::WireError;

/// Vanilla caps a cookie's payload at 5 KiB.
pub const MAX_COOKIE_LEN: usize = 5120;
/// Longest cookie key (an identifier, `namespace:path`) Warden reads; its own is 13.
pub const MAX_COOKIE_KEY_CHARS: usize = 256;

/// Most profile properties vanilla sends, and the bounds of their fields (a texture
/// property's value is the long one).
const MAX_PROPERTIES: usize = 16;
const MAX_PROPERTY_NAME_CHARS: usize = 64;
const MAX_PROPERTY_VALUE_CHARS: usize = 32767;
const MAX_PROPERTY_SIGNATURE_CHARS: usize = 1024;

/// Clientbound `cookie_request`: asks the client for the cookie stored under `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieRequest<'a> {
    pub key: &'a str,
}

impl Packet for CookieRequest<'_> {
    const ID: i32 = 0x05;
}

impl Encode for CookieRequest<'_> {
    fn write_fields(&self, w: PacketWriter) -> PacketWriter {
        w.string(self.key)
    }
}

impl<'a> Decode<'a> for CookieRequest<'a> {
    fn read_fields(r: &mut PacketReader<'a>) -> Result<Self, WireError> {
        Ok(Self {
            key: r.string(MAX_COOKIE_KEY_CHARS)?,
        })
    }
}

/// Serverbound `cookie_response`: the key asked for and the cookie, if the client has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieResponse<'a> {
    pub key: &'a str,
    pub payload: Option<&'a [u8]>,
}

impl Packet for CookieResponse<'_> {
    const ID: i32 = 0x04;
}

impl Encode for CookieResponse<'_> {
    fn write_fields(&self, w: PacketWriter) -> PacketWriter {
        let w = w.string(self.key);
        match self.payload {
            Some(p) => w.raw(&[1]).byte_array(p),
            None => w.raw(&[0]),
        }
    }
}

impl<'a> Decode<'a> for CookieResponse<'a> {
    fn read_fields(r: &mut PacketReader<'a>) -> Result<Self, WireError> {
        let key = r.string(MAX_COOKIE_KEY_CHARS)?;
        let payload = if r.bool()? {
            Some(r.byte_array(MAX_COOKIE_LEN)?)
        } else {
            None
        };
        Ok(Self { key, payload })
    }
}

/// Clientbound `success` (Login Success) with no profile properties: the anteroom logs
/// players in offline, and the backend authenticates them again after the Transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginSuccess<'a> {
    pub uuid: u128,
    pub name: &'a str,
    /// Present (and always `false` here) before 1.21.2 ([`version::V1_21_2`]).
    pub strict_error_handling: Option<bool>,
}

impl<'a> LoginSuccess<'a> {
    /// Login Success as a client of `protocol` expects it.
    pub fn new(protocol: i32, uuid: u128, name: &'a str) -> Self {
        Self {
            uuid,
            name,
            strict_error_handling: (protocol < version::V1_21_2).then_some(false),
        }
    }

    /// Decodes a body sent to a client of `protocol`. Profile properties are checked
    /// against vanilla's bounds and skipped (Warden writes none).
    pub fn decode_for(body: &'a [u8], protocol: i32) -> Result<Self, WireError> {
        let mut r = PacketReader::new(body);
        r.expect_id(Self::ID)?;
        let uuid = r.uuid()?;
        let name = r.string(16)?;
        let properties = r.varint()?;
        if properties < 0 || properties as usize > MAX_PROPERTIES {
            return Err(WireError::BadLength);
        }
        for _ in 0..properties {
            r.string(MAX_PROPERTY_NAME_CHARS)?;
            r.string(MAX_PROPERTY_VALUE_CHARS)?;
            if r.bool()? {
                r.string(MAX_PROPERTY_SIGNATURE_CHARS)?;
            }
        }
        let strict_error_handling = if protocol < version::V1_21_2 {
            Some(r.bool()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Self {
            uuid,
            name,
            strict_error_handling,
        })
    }
}

impl Packet for LoginSuccess<'_> {
    const ID: i32 = 0x02;
}

impl Encode for LoginSuccess<'_> {
    fn write_fields(&self, w: PacketWriter) -> PacketWriter {
        let w = w.raw(&self.uuid.to_be_bytes()).string(self.name).varint(0);
        match self.strict_error_handling {
            Some(strict) => w.raw(&[u8::from(strict)]),
            None => w,
        }
    }
}

/// Serverbound `login_acknowledged`: no fields; the client is now in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginAcknowledged;

impl Packet for LoginAcknowledged {
    const ID: i32 = 0x03;
}

impl Encode for LoginAcknowledged {
    fn write_fields(&self, w: PacketWriter) -> PacketWriter {
        w
    }
}

impl Decode<'_> for LoginAcknowledged {
    fn read_fields(_: &mut PacketReader<'_>) -> Result<Self, WireError> {
        Ok(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::frame::body_of as body;

    #[test]
    fn cookie_request_and_response() {
        let req = CookieRequest {
            key: "warden:ticket",
        };
        let b = body(&req.frame());
        assert_eq!(b[0], 0x05);
        assert_eq!(CookieRequest::decode(&b), Ok(req));
        for payload in [None, Some(&[1u8, 2, 3][..]), Some(&[][..])] {
            let resp = CookieResponse {
                key: "warden:ticket",
                payload,
            };
            let b = body(&resp.frame());
            assert_eq!(b[0], 0x04);
            assert_eq!(CookieResponse::decode(&b), Ok(resp));
        }
    }

    #[test]
    fn cookie_response_bounds() {
        let big = vec![0u8; MAX_COOKIE_LEN + 1];
        let over = CookieResponse {
            key: "k:k",
            payload: Some(&big),
        };
        assert_eq!(
            CookieResponse::decode(&body(&over.frame())),
            Err(WireError::BadLength)
        );
        let key = "k".repeat(MAX_COOKIE_KEY_CHARS + 1);
        let long_key = CookieResponse {
            key: &key,
            payload: None,
        };
        assert!(CookieResponse::decode(&body(&long_key.frame())).is_err());
        assert!(CookieResponse::decode(&[0x04]).is_err());
        assert!(CookieResponse::decode(&[0x05, 0, 0]).is_err());
    }

    #[test]
    fn login_success_layouts() {
        let uuid = 0x0011_2233_4455_6677_8899_aabb_ccdd_eeffu128;
        for (protocol, strict) in [(766, true), (767, true), (768, false), (775, false)] {
            let b = body(&LoginSuccess::new(protocol, uuid, "Alex").frame());
            let mut r = PacketReader::new(&b);
            assert_eq!(r.varint().unwrap(), 0x02);
            assert_eq!(r.uuid().unwrap(), uuid);
            assert_eq!(r.string(16).unwrap(), "Alex");
            assert_eq!(r.varint().unwrap(), 0);
            if strict {
                assert!(!r.bool().unwrap());
            }
            r.finish().unwrap();
            let back = LoginSuccess::decode_for(&b, protocol).unwrap();
            assert_eq!(back, LoginSuccess::new(protocol, uuid, "Alex"));
        }
    }

    #[test]
    fn login_success_with_properties_decodes() {
        let b = PacketWriter::new(0x02)
            .raw(&7u128.to_be_bytes())
            .string("Steve")
            .varint(1)
            .string("textures")
            .string("e30=")
            .raw(&[1])
            .string("sig")
            .into_frame();
        let b = body(&b);
        let got = LoginSuccess::decode_for(&b, 775).unwrap();
        assert_eq!((got.uuid, got.name), (7, "Steve"));
        let too_many = PacketWriter::new(0x02)
            .raw(&7u128.to_be_bytes())
            .string("Steve")
            .varint(17)
            .into_frame();
        assert_eq!(
            LoginSuccess::decode_for(&body(&too_many), 775),
            Err(WireError::BadLength)
        );
    }

    #[test]
    fn login_acknowledged() {
        assert_eq!(body(&LoginAcknowledged.frame()).as_ref(), [0x03]);
        assert_eq!(LoginAcknowledged::decode(&[0x03]), Ok(LoginAcknowledged));
        assert!(LoginAcknowledged::decode(&[0x03, 0]).is_err());
        assert!(LoginAcknowledged::decode(&[0x00]).is_err());
    }
}
