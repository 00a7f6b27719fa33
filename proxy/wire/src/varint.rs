//! VarInt and VarLong: the protocol's little-endian base-128 integers.
//!
//! Decoding keeps "need more bytes" (`Incomplete`) apart from "this can never be valid"
//! (`TooLong`): a streaming reader waits on the first and closes on the second.

use bytes::BufMut;

/// Why a VarInt could not be read from a slice.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum VarIntError {
    /// The slice ends before the last byte of the number.
    Incomplete,
    /// More continuation bytes than the type allows (5 for VarInt, 10 for VarLong).
    TooLong,
}

/// Reads a VarInt from the start of `buf`; returns the value and how many bytes it used.
pub fn read_varint(buf: &[u8]) -> Result<(i32, usize), VarIntError> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let Some(&byte) = buf.get(i) else {
            return Err(VarIntError::Incomplete);
        };
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value as i32, i + 1));
        }
    }
    Err(VarIntError::TooLong)
}

/// Reads a VarLong from the start of `buf`.
pub fn read_varlong(buf: &[u8]) -> Result<(i64, usize), VarIntError> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let Some(&byte) = buf.get(i) else {
            return Err(VarIntError::Incomplete);
        };
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value as i64, i + 1));
        }
    }
    Err(VarIntError::TooLong)
}

/// Appends `value` as a VarInt.
pub fn write_varint(out: &mut impl BufMut, value: i32) {
    let mut v = value as u32;
    loop {
        if v & !0x7f == 0 {
            out.put_u8(v as u8);
            return;
        }
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
}

/// Appends `value` as a VarLong.
pub fn write_varlong(out: &mut impl BufMut, value: i64) {
    let mut v = value as u64;
    loop {
        if v & !0x7f == 0 {
            out.put_u8(v as u8);
            return;
        }
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
}

/// How many bytes `value` takes as a VarInt.
pub fn varint_len(value: i32) -> usize {
    let v = value as u32;
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (255, &[0xff, 0x01]),
            (25565, &[0xdd, 0xc7, 0x01]),
            (2097151, &[0xff, 0xff, 0x7f]),
            (i32::MAX, &[0xff, 0xff, 0xff, 0xff, 0x07]),
            (-1, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0x80, 0x80, 0x80, 0x80, 0x08]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            write_varint(&mut out, *value);
            assert_eq!(&out[..], *bytes, "encode {value}");
            assert_eq!(
                read_varint(bytes),
                Ok((*value, bytes.len())),
                "decode {value}"
            );
            assert_eq!(varint_len(*value), bytes.len());
        }
    }

    #[test]
    fn incomplete_and_too_long_are_distinct() {
        assert_eq!(read_varint(&[]), Err(VarIntError::Incomplete));
        assert_eq!(read_varint(&[0x80, 0x80]), Err(VarIntError::Incomplete));
        assert_eq!(read_varint(&[0x80; 6]), Err(VarIntError::TooLong));
        assert_eq!(read_varlong(&[0x80; 11]), Err(VarIntError::TooLong));
    }

    #[test]
    fn varlong_roundtrip() {
        for v in [0i64, 1, -1, i64::MAX, i64::MIN, 1 << 40] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            assert_eq!(read_varlong(&out), Ok((v, out.len())));
        }
    }
}
