//! The edge↔node link's frames on arbitrary bytes (what a node reads first from every
//! stream, and an edge from every reply). Properties:
//! - neither decoder panics;
//! - a decoded Open re-encodes to exactly the input, and so does a Reply (a frame has one
//!   encoding, so nothing can be smuggled in a second reading);
//! - a prefix that announces more than `MAX_OPEN_BYTES` is refused before anything is read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_wire::link::{Open, Reply, MAX_OPEN_BYTES, PREFIX_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Ok(open) = Open::decode(data) {
        let again = open.encode().expect("a decoded Open encodes");
        assert_eq!(&again[..], data);
    }
    if let Some(prefix) = data.get(..PREFIX_BYTES) {
        let prefix: [u8; PREFIX_BYTES] = prefix.try_into().expect("prefix");
        if let Ok(len) = Open::rest_len(&prefix) {
            assert!(len <= MAX_OPEN_BYTES);
        }
    }
    if let Ok(reply) = Reply::decode(data) {
        assert_eq!(&reply.encode()[..], data);
    }
});
