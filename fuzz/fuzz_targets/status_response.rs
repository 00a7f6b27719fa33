//! A backend's Status Response stream, read under a size limit, and served again with
//! another protocol number.
//!
//! Input layout: `u16` LE `m` (the limit is `m + 1` bytes), `i32` LE (the protocol to
//! serve), then the bytes the backend sends.
//!
//! Properties:
//! - a frame longer than the limit is refused from its length prefix alone, before its
//!   body arrives (so a 1 MiB status costs three bytes of reading);
//! - a parsed status's clean JSON fits the limit, and parsing its own frame again gives
//!   the same status (the cleaning is stable);
//! - serving it with any protocol gives a well-formed frame that parses to the same status
//!   with only the protocol changed (when it has one), and grows it by at most 12 bytes:
//!   the number's text grows by at most 10 characters (one digit to `-2147483648`), and
//!   the JSON string's and the frame's length prefixes by at most one byte each.
#![no_main]

use arbitrary::Unstructured;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use warden_wire::{
    parse_status_response, read_varint, FrameDecoder, StatusDoc, WireError, MAX_LENGTH_PREFIX,
};

/// The one frame in `frame` (and nothing after it).
fn body_of(frame: &Bytes, limit: usize) -> Bytes {
    let mut d = FrameDecoder::new();
    d.extend(frame);
    let body = d
        .next_frame(limit)
        .expect("a frame Warden wrote decodes")
        .expect("a frame Warden wrote is whole");
    assert!(d.buffered().is_empty(), "bytes after the frame");
    body
}

fn reparse(frame: &Bytes, limit: usize) -> StatusDoc {
    parse_status_response(&body_of(frame, usize::MAX >> 2), limit)
        .expect("a status Warden wrote parses again")
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let limit = u.arbitrary::<u16>().unwrap_or(0) as usize + 1;
    let protocol = u.arbitrary::<i32>().unwrap_or(0);
    let stream = u.take_rest();

    let mut d = FrameDecoder::new();
    d.extend(stream);
    let body = match d.next_frame(limit) {
        Ok(Some(body)) => body,
        Ok(None) => return,
        Err(WireError::FrameTooLarge { len, max }) => {
            assert!(len > limit && max == limit);
            // The verdict needs the length prefix only.
            let (_, n) = read_varint(stream).expect("a length prefix");
            assert!(n <= MAX_LENGTH_PREFIX);
            let mut head = FrameDecoder::new();
            head.extend(&stream[..n]);
            assert_eq!(
                head.next_frame(limit),
                Err(WireError::FrameTooLarge { len, max })
            );
            return;
        }
        Err(_) => return,
    };
    let Ok(doc) = parse_status_response(&body, limit) else {
        return;
    };
    let frame = doc.frame();
    let json_len = {
        let b = body_of(&frame, usize::MAX >> 2);
        let mut r = warden_wire::PacketReader::new(&b);
        assert_eq!(r.varint(), Ok(0x00));
        r.string(b.len()).expect("JSON string").len()
    };
    assert!(json_len <= limit, "{json_len} bytes of JSON over {limit}");
    assert_eq!(reparse(&frame, limit), doc, "cleaning is not stable");

    let served = doc.with_protocol(protocol);
    assert!(served.len() <= frame.len() + 12);
    let again = reparse(&served, usize::MAX >> 2);
    if again.protocol == doc.protocol && served == frame {
        // No protocol to swap, or the same one.
        assert!(doc.protocol == -1 || doc.protocol == protocol);
    } else {
        assert_eq!(again.protocol, protocol);
        assert_eq!(
            (&again.version_name, &again.motd_text, again.online, again.max),
            (&doc.version_name, &doc.motd_text, doc.online, doc.max)
        );
        assert_eq!(again.with_protocol(doc.protocol), frame);
    }
});
