//! Handshake parsing and host normalization on arbitrary bytes.
//!
//! Properties:
//! - a parsed handshake re-encodes to a frame that parses back to the same handshake, in no
//!   more bytes than the input (the input may use overlong VarInts, the encoder never does);
//! - the address respects `MAX_ADDRESS_CHARS`;
//! - `normalize_host` (on the parsed address, or on the raw bytes read as lossy UTF-8 when
//!   they are not a handshake, for coverage) gives a routing key that is non-empty,
//!   lowercase, at most `MAX_HOST_CHARS` characters, has no trailing '.', no NUL and no
//!   "///"; `Empty` and `TooLong` are only returned when they are true of the stripped
//!   address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_wire::packets::MAX_ADDRESS_CHARS;
use warden_wire::{normalize_host, FrameDecoder, Handshake, HostError, MAX_HOST_CHARS};

fn check_host(address: &str) {
    match normalize_host(address) {
        Ok(key) => {
            assert!(!key.is_empty());
            assert!(
                key.chars().count() <= MAX_HOST_CHARS,
                "key of {} chars from {address:?}",
                key.chars().count()
            );
            assert_eq!(key.to_lowercase(), key, "key not lowercase");
            assert!(!key.ends_with('.'), "trailing dot in {key:?}");
            assert!(!key.contains('\0'), "NUL in {key:?}");
            assert!(!key.contains("///"), "/// in {key:?}");
        }
        Err(HostError::Empty) => {
            let head = address.split('\0').next().unwrap_or("");
            let head = head.split("///").next().unwrap_or("");
            assert!(
                head.chars().all(|c| c.is_whitespace() || c == '.'),
                "Empty for {address:?}"
            );
        }
        Err(HostError::TooLong) => {
            let head = address.split('\0').next().unwrap_or("");
            let head = head.split("///").next().unwrap_or("");
            assert!(
                head.to_lowercase().chars().count() > MAX_HOST_CHARS,
                "TooLong for {address:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match Handshake::parse(data) {
        Ok(h) => {
            assert!(h.address.chars().count() <= MAX_ADDRESS_CHARS);
            let frame = h.encode();
            let mut d = FrameDecoder::new();
            d.extend(&frame);
            let body = d
                .next_frame(usize::MAX >> 1)
                .expect("encoded handshake is a valid frame")
                .expect("encoded handshake is a whole frame");
            assert!(
                d.buffered().is_empty(),
                "encode() wrote bytes after the frame"
            );
            assert!(
                body.len() <= data.len(),
                "re-encoding is longer than the input"
            );
            assert_eq!(Handshake::parse(&body), Ok(h.clone()));
            check_host(&h.address);
        }
        Err(_) => check_host(&String::from_utf8_lossy(data)),
    }
});
