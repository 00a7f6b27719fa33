//! FrameDecoder fed an arbitrary stream in arbitrary chunks.
//!
//! Input layout (read with `arbitrary::Unstructured`, easy to hand-craft seeds for):
//! one byte `k`, then `k % 16` split points (`u16` each), then the stream itself.
//!
//! Properties:
//! - the frames, the first error and the bytes left over are the same whether the stream
//!   arrives in one read or chunk by chunk (TCP segmentation must not change routing or the
//!   error metric);
//! - no frame is empty or longer than the limit (1024), and each one is exactly the bytes
//!   that follow its length prefix (at most 3 bytes) in the stream;
//! - without an error, what is left over is a strict prefix of a frame: a partial length
//!   prefix, or a prefix whose body has not fully arrived, so fewer than 3 + 1024 bytes
//!   stay buffered.
#![no_main]

use arbitrary::Unstructured;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use warden_wire::{read_varint, FrameDecoder, WireError, MAX_LENGTH_PREFIX};

const MAX_FRAME: usize = 1024;

#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Bytes>,
    error: Option<WireError>,
    /// Bytes still buffered (only meaningful without an error).
    rest: Vec<u8>,
}

/// Drains every whole frame; returns the error that stopped it, if any.
fn drain(d: &mut FrameDecoder, frames: &mut Vec<Bytes>) -> Option<WireError> {
    loop {
        match d.next_frame(MAX_FRAME) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

fn feed(chunks: &[&[u8]]) -> Outcome {
    let mut d = FrameDecoder::new();
    let mut frames = Vec::new();
    // An empty decoder has nothing to give.
    assert_eq!(d.next_frame(MAX_FRAME), Ok(None));
    for chunk in chunks {
        d.extend(chunk);
        if let Some(e) = drain(&mut d, &mut frames) {
            return Outcome {
                frames,
                error: Some(e),
                rest: Vec::new(),
            };
        }
    }
    Outcome {
        frames,
        error: None,
        rest: d.buffered().to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let count = u.arbitrary::<u8>().unwrap_or(0) % 16;
    let mut splits = Vec::new();
    for _ in 0..count {
        splits.push(u.arbitrary::<u16>().unwrap_or(0) as usize);
    }
    let stream = u.take_rest();

    // Split points anywhere in 0..=len (duplicates give empty chunks, which must be harmless).
    let mut cuts: Vec<usize> = splits.iter().map(|s| s % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut at = 0;
    for c in cuts {
        chunks.push(&stream[at..c]);
        at = c;
    }
    chunks.push(&stream[at..]);

    let whole = feed(&[stream]);
    let split = feed(&chunks);
    assert_eq!(
        whole, split,
        "chunking changed the result; chunks: {chunks:?}"
    );

    // Byte-by-byte is the harshest chunking; check it too for short streams.
    if stream.len() <= 64 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(whole, feed(&bytes), "byte-by-byte changed the result");
    }

    // Every frame is the body after its own prefix, in stream order.
    let mut pos = 0;
    for f in &whole.frames {
        assert!(
            !f.is_empty() && f.len() <= MAX_FRAME,
            "frame of {} bytes",
            f.len()
        );
        let (len, n) = read_varint(&stream[pos..]).expect("frame without a prefix");
        assert!(n <= MAX_LENGTH_PREFIX);
        assert_eq!(len as usize, f.len());
        assert_eq!(&stream[pos + n..pos + n + f.len()], &f[..]);
        pos += n + f.len();
    }

    if whole.error.is_none() {
        let rest = &stream[pos..];
        assert_eq!(whole.rest, rest);
        assert!(rest.len() < MAX_LENGTH_PREFIX + MAX_FRAME);
        match read_varint(rest) {
            Ok((len, n)) => {
                assert!(n <= MAX_LENGTH_PREFIX);
                assert!(len > 0 && (len as usize) <= MAX_FRAME);
                assert!(
                    rest.len() < n + len as usize,
                    "a whole frame was left behind"
                );
            }
            Err(_) => assert!(rest.len() < MAX_LENGTH_PREFIX && rest.iter().all(|b| b & 0x80 != 0)),
        }
    }
});
