//! VarInt / VarLong decoding on arbitrary bytes.
//!
//! Properties:
//! - at most 5 (VarInt) / 10 (VarLong) bytes are consumed, never more than the input has;
//! - the consumed bytes are exactly "continuation bytes, then one final byte";
//! - `Incomplete` means every byte present is a continuation byte and there are fewer than
//!   the maximum; `TooLong` means the first 5 (10) bytes are all continuation bytes;
//! - decoding ignores whatever follows the number;
//! - re-encoding the value decodes back to it, in `varint_len` bytes, never more than were
//!   consumed; for a canonical (shortest) input the re-encoding is byte-identical, so the
//!   consumed length equals `varint_len`. Overlong inputs (`80 00` = 0) are accepted, as
//!   vanilla accepts them, so that equality cannot hold for them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_wire::{
    read_varint, read_varlong, varint_len, write_varint, write_varlong, VarIntError,
};

fn cont(b: &u8) -> bool {
    b & 0x80 != 0
}

/// Checks the framing of a decoded number: `n` bytes, all but the last with the
/// continuation bit. `max` is 5 or 10.
fn check_shape(data: &[u8], n: usize, max: usize) {
    assert!((1..=max).contains(&n), "consumed {n} bytes");
    assert!(n <= data.len());
    assert!(data[..n - 1].iter().all(cont));
    assert!(!cont(&data[n - 1]));
}

fn check_error(data: &[u8], err: VarIntError, max: usize) {
    match err {
        VarIntError::Incomplete => {
            assert!(data.len() < max);
            assert!(data.iter().all(cont));
        }
        VarIntError::TooLong => {
            assert!(data.len() >= max);
            assert!(data[..max].iter().all(cont));
        }
    }
}

/// A canonical encoding has no redundant high groups: its last byte is non-zero (unless it
/// is the only byte) and, at full length, carries no bits beyond the type's width.
fn canonical(bytes: &[u8], max: usize, last_max: u8) -> bool {
    let n = bytes.len();
    let last = bytes[n - 1];
    n == 1 || (last != 0 && (n < max || last <= last_max))
}

fn varlong_len(v: i64) -> usize {
    let bits = 64 - (v as u64).leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

fuzz_target!(|data: &[u8]| {
    match read_varint(data) {
        Ok((v, n)) => {
            check_shape(data, n, 5);
            assert_eq!(read_varint(&data[..n]), Ok((v, n)));
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(read_varint(&out), Ok((v, out.len())));
            assert!(out.len() <= n, "re-encoding is longer than the input");
            if canonical(&data[..n], 5, 0x0f) {
                assert_eq!(&out[..], &data[..n], "canonical VarInt does not round-trip");
                assert_eq!(n, varint_len(v));
            }
        }
        Err(e) => check_error(data, e, 5),
    }

    match read_varlong(data) {
        Ok((v, n)) => {
            check_shape(data, n, 10);
            assert_eq!(read_varlong(&data[..n]), Ok((v, n)));
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v));
            assert_eq!(read_varlong(&out), Ok((v, out.len())));
            assert!(out.len() <= n, "re-encoding is longer than the input");
            if canonical(&data[..n], 10, 0x01) {
                assert_eq!(
                    &out[..],
                    &data[..n],
                    "canonical VarLong does not round-trip"
                );
            }
            // A VarInt that decodes is also a VarLong prefix-wise: same bytes, and the
            // VarLong value truncates to the VarInt value when it fits 5 bytes.
            if let Ok((vi, ni)) = read_varint(data) {
                assert_eq!(ni, n);
                assert_eq!(v as u64 & 0xffff_ffff, vi as u32 as u64);
            }
        }
        Err(e) => check_error(data, e, 10),
    }
});
