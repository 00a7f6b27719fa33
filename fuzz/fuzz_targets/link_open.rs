//! The edge↔node link's frames on arbitrary bytes (what a node reads first from every
//! stream, an edge from every reply, and both ends from the control stream). Properties:
//! - no decoder panics;
//! - a decoded Open re-encodes to exactly the input, and so do a Reply and a control frame
//!   (a frame has one encoding, so nothing can be smuggled in a second reading);
//! - a prefix that announces more than `MAX_OPEN_BYTES` is refused before anything is read,
//!   and a control frame's length above `MAX_CONTROL_BYTES` likewise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_wire::link::{Open, Reply, MAX_OPEN_BYTES, PREFIX_BYTES};
use warden_wire::link_control::{stream_start, Control, StreamStart, MAX_CONTROL_BYTES};

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
        if let Ok(StreamStart::Player { rest }) = stream_start(&prefix) {
            assert!(rest <= MAX_OPEN_BYTES);
        }
    }
    if let Ok(reply) = Reply::decode(data) {
        assert_eq!(&reply.encode()[..], data);
    }
    if let Some(head) = data.get(..4) {
        let head: [u8; 4] = head.try_into().expect("head");
        if let Ok(len) = Control::body_len(head) {
            assert!(len <= MAX_CONTROL_BYTES);
        }
    }
    if let Ok(control) = Control::decode(data) {
        let again = control.encode().expect("a decoded control frame encodes");
        assert_eq!(&again[..], data);
    }
});
