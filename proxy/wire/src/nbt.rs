//! Just enough network NBT to write text components and dialogs.
//!
//! In configuration, every protocol the anteroom holds players in (766+) carries text components and
//! dialogs as "anonymous" NBT: one tag-type byte, then the payload, with no root name.
//! Strings are Java's modified UTF-8 with a u16 byte length, so they are truncated at a
//! character boundary rather than ever producing an invalid tag.

use bytes::{BufMut, BytesMut};

const END: u8 = 0;
const BYTE: u8 = 1;
const STRING: u8 = 8;
const LIST: u8 = 9;
const COMPOUND: u8 = 10;

/// The tags Warden writes. Lists only ever hold compounds here.
#[derive(Debug, Clone, PartialEq)]
pub enum Tag {
    Byte(i8),
    String(String),
    CompoundList(Vec<Vec<(&'static str, Tag)>>),
    Compound(Vec<(&'static str, Tag)>),
}

impl Tag {
    fn id(&self) -> u8 {
        match self {
            Tag::Byte(_) => BYTE,
            Tag::String(_) => STRING,
            Tag::CompoundList(_) => LIST,
            Tag::Compound(_) => COMPOUND,
        }
    }

    /// Writes the tag as network (anonymous) NBT: type byte + payload.
    pub fn write_anonymous(&self, out: &mut BytesMut) {
        out.put_u8(self.id());
        self.write_payload(out);
    }

    fn write_payload(&self, out: &mut BytesMut) {
        match self {
            Tag::Byte(b) => out.put_i8(*b),
            Tag::String(s) => write_string(out, s),
            Tag::CompoundList(items) => {
                out.put_u8(if items.is_empty() { END } else { COMPOUND });
                out.put_i32(items.len() as i32);
                for entries in items {
                    write_entries(out, entries);
                }
            }
            Tag::Compound(entries) => write_entries(out, entries),
        }
    }
}

fn write_entries(out: &mut BytesMut, entries: &[(&'static str, Tag)]) {
    for (name, tag) in entries {
        out.put_u8(tag.id());
        write_string(out, name);
        tag.write_payload(out);
    }
    out.put_u8(END);
}

/// Java modified UTF-8: NUL as two bytes, characters beyond the BMP as two 3-byte surrogates.
fn write_string(out: &mut BytesMut, s: &str) {
    let at = out.len();
    out.put_u16(0);
    let mut len = 0usize;
    for c in s.chars() {
        let mut units = [0u16; 2];
        let units = c.encode_utf16(&mut units);
        let need: usize = units.iter().map(|&u| unit_len(u)).sum();
        if len + need > usize::from(u16::MAX) {
            break;
        }
        for &u in units.iter() {
            put_unit(out, u);
        }
        len += need;
    }
    out[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
}

fn unit_len(u: u16) -> usize {
    match u {
        0x0001..=0x007f => 1,
        0x0000 | 0x0080..=0x07ff => 2,
        _ => 3,
    }
}

fn put_unit(out: &mut BytesMut, u: u16) {
    match unit_len(u) {
        1 => out.put_u8(u as u8),
        2 => {
            out.put_u8(0xc0 | (u >> 6) as u8);
            out.put_u8(0x80 | (u & 0x3f) as u8);
        }
        _ => {
            out.put_u8(0xe0 | (u >> 12) as u8);
            out.put_u8(0x80 | ((u >> 6) & 0x3f) as u8);
            out.put_u8(0x80 | (u & 0x3f) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(tag: &Tag) -> Vec<u8> {
        let mut out = BytesMut::new();
        tag.write_anonymous(&mut out);
        out.to_vec()
    }

    #[test]
    fn text_component() {
        let tag = Tag::Compound(vec![("text", Tag::String("hi".into()))]);
        assert_eq!(
            bytes(&tag),
            [10, 8, 0, 4, b't', b'e', b'x', b't', 0, 2, b'h', b'i', 0]
        );
    }

    #[test]
    fn modified_utf8() {
        // NUL, 'é' (2 bytes), '€' (3 bytes), U+1F600 (surrogate pair, 6 bytes).
        let got = bytes(&Tag::String("\0é€😀".into()));
        assert_eq!(
            got,
            [
                8, 0, 13, 0xc0, 0x80, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xed, 0xa0, 0xbd, 0xed, 0xb8,
                0x80
            ]
        );
    }

    #[test]
    fn long_strings_are_cut_at_a_character() {
        let got = bytes(&Tag::String("€".repeat(30_000)));
        let len = usize::from(u16::from_be_bytes([got[1], got[2]]));
        assert_eq!(len, 21_845 * 3);
        assert_eq!(got.len(), 3 + len);
    }

    #[test]
    fn list_of_compounds() {
        let tag = Tag::CompoundList(vec![vec![("b", Tag::Byte(1))]]);
        assert_eq!(bytes(&tag), [9, 10, 0, 0, 0, 1, 1, 0, 1, b'b', 1, 0]);
        assert_eq!(bytes(&Tag::CompoundList(vec![])), [9, 0, 0, 0, 0, 0]);
    }
}
