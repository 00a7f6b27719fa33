//! Hash-while-streaming wrappers: every byte is hashed as it passes, so neither archiving nor
//! verifying ever needs a second pass over the data or a copy of it in memory.

use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Lower-case hex sha256 of a byte slice (manifests and tests).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Sync reader that hashes and counts what is read through it.
pub(crate) struct HashingRead<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingRead<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingRead {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// (bytes read, hex sha256 of them)
    pub(crate) fn finish(self) -> (u64, String) {
        (self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Async twin of [`HashingRead`], used by store implementations in `put`.
pub(crate) struct HashingAsyncRead<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: AsyncRead + Unpin> HashingAsyncRead<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingAsyncRead {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub(crate) fn finish(self) -> (u64, String) {
        (self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingAsyncRead<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let fresh = &buf.filled()[before..];
            this.hasher.update(fresh);
            this.bytes += fresh.len() as u64;
        }
        res
    }
}
