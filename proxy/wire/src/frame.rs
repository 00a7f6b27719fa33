//! Length-prefixed frames, read incrementally from a stream.
//!
//! Clients often send the handshake, the status request and the ping in one TCP segment
//! (mc-router #596 lost pongs by assuming one frame per read). The decoder therefore owns a
//! buffer, hands out whole frames one at a time, and keeps whatever follows for the next
//! call — or for the relay, which must replay it to the backend untouched.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::varint::{read_varint, write_varint, VarIntError};
use super::WireError;

/// Vanilla caps the length prefix at 3 bytes (21 bits, 2 MiB).
pub const MAX_LENGTH_PREFIX: usize = 3;

/// Accumulates bytes and splits off whole frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self {
            buf: BytesMut::with_capacity(512),
        }
    }

    /// Appends freshly read bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer the caller may read into directly (see `tokio::io::AsyncReadExt::read_buf`).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Drops the first `n` buffered bytes (e.g. a PROXY header read by someone else).
    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
    }

    /// Takes everything not yet returned as a frame (for replay to the backend). Nothing
    /// left is an empty `Bytes` that does not hold on to the read buffer.
    pub fn take_rest(&mut self) -> Bytes {
        if self.buf.is_empty() {
            return Bytes::new();
        }
        self.buf.split().freeze()
    }

    /// Returns the next whole frame's body (packet id + fields), `Ok(None)` if more bytes
    /// are needed, or an error if the bytes can never form a frame within `max_len`.
    pub fn next_frame(&mut self, max_len: usize) -> Result<Option<Bytes>, WireError> {
        // Only the first MAX_LENGTH_PREFIX bytes can be a prefix, so the verdict (and the
        // error reported) does not depend on how many bytes happen to have arrived.
        let head = &self.buf[..self.buf.len().min(MAX_LENGTH_PREFIX)];
        let (len, prefix) = match read_varint(head) {
            Ok(v) => v,
            Err(VarIntError::Incomplete) if head.len() < MAX_LENGTH_PREFIX => return Ok(None),
            Err(_) => return Err(WireError::LengthPrefixTooLong(MAX_LENGTH_PREFIX)),
        };
        if len <= 0 {
            return Err(WireError::BadLength);
        }
        let len = len as usize;
        if len > max_len {
            return Err(WireError::FrameTooLarge { len, max: max_len });
        }
        if self.buf.len() < prefix + len {
            return Ok(None);
        }
        self.buf.advance(prefix);
        Ok(Some(self.buf.split_to(len).freeze()))
    }
}

/// Prefixes `body` (packet id + fields) with its length.
pub fn encode_frame(body: &[u8], out: &mut BytesMut) {
    out.reserve(body.len() + 5);
    write_varint(out, body.len() as i32);
    out.put_slice(body);
}

/// `body` (packet id + fields) with its length prefix, as it goes on the wire.
pub fn framed(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + MAX_LENGTH_PREFIX);
    encode_frame(body, &mut out);
    out.freeze()
}

/// The body of the one frame in `frame`, for tests that encode a packet and read it back.
#[cfg(test)]
pub(crate) fn body_of(frame: &[u8]) -> bytes::Bytes {
    let mut d = FrameDecoder::new();
    d.extend(frame);
    d.next_frame(1 << 20).unwrap().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        framed(body).to_vec()
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut all = frame(&[0x00, 1, 2, 3]);
        all.extend(frame(&[0x00]));
        all.extend(frame(&[0x01, 9, 9, 9, 9, 9, 9, 9, 9]));
        let mut d = FrameDecoder::new();
        d.extend(&all);
        assert_eq!(d.next_frame(1024).unwrap().unwrap().as_ref(), &[0, 1, 2, 3]);
        assert_eq!(d.next_frame(1024).unwrap().unwrap().as_ref(), &[0]);
        assert_eq!(d.next_frame(1024).unwrap().unwrap().len(), 9);
        assert_eq!(d.next_frame(1024).unwrap(), None);
    }

    #[test]
    fn byte_by_byte() {
        let all = frame(&[0x00; 300]);
        let mut d = FrameDecoder::new();
        for (i, b) in all.iter().enumerate() {
            let got = d.next_frame(1024).unwrap();
            assert!(got.is_none(), "frame early at {i}");
            d.extend(&[*b]);
        }
        assert_eq!(d.next_frame(1024).unwrap().unwrap().len(), 300);
    }

    #[test]
    fn limits() {
        let mut d = FrameDecoder::new();
        d.extend(&[0x80, 0x80, 0x80, 0x01]);
        assert!(matches!(
            d.next_frame(1024),
            Err(WireError::LengthPrefixTooLong(3))
        ));
        let mut d = FrameDecoder::new();
        d.extend(&[0x80, 0x80, 0x80]);
        assert!(
            d.next_frame(1024).is_err(),
            "3 continuation bytes can never be a valid prefix"
        );
        let mut d = FrameDecoder::new();
        d.extend(&frame(&[0u8; 2000])[..10]);
        assert!(matches!(
            d.next_frame(1024),
            Err(WireError::FrameTooLarge { .. })
        ));
        let mut d = FrameDecoder::new();
        d.extend(&[0x00]);
        assert_eq!(d.next_frame(1024), Err(WireError::BadLength));
    }

    /// Found by fuzz/frames_split: five continuation bytes in one read gave
    /// `VarIntTooLong`, the same bytes split after the third gave `LengthPrefixTooLong`.
    #[test]
    fn prefix_error_does_not_depend_on_chunking() {
        for bytes in [
            &[0x80u8; 3][..],
            &[0x80; 5],
            &[0x80; 6],
            &[0x80, 0x80, 0x80, 0x80, 0x01],
        ] {
            let mut whole = FrameDecoder::new();
            whole.extend(bytes);
            let mut split = FrameDecoder::new();
            let mut got = Ok(None);
            for b in bytes {
                split.extend(&[*b]);
                got = split.next_frame(1024);
                if got.is_err() {
                    break;
                }
            }
            let want = Err(WireError::LengthPrefixTooLong(MAX_LENGTH_PREFIX));
            assert_eq!(whole.next_frame(1024), want, "{bytes:02x?} in one read");
            assert_eq!(got, want, "{bytes:02x?} byte by byte");
        }
    }
}
