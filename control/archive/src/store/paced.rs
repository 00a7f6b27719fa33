//! A bandwidth cap for archive traffic, so restoring one big world does not starve the
//! node's other servers (or the uplink to the object store) of I/O.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

use super::{ArchiveStore, ByteStream, ObjectInfo, ObjectMeta, Upload};
use crate::error::Result;

/// Wraps a store so every object read from it or written to it moves at most
/// `bytes_per_sec`.
pub struct Paced {
    inner: Arc<dyn ArchiveStore>,
    bytes_per_sec: f64,
}

impl Paced {
    pub fn new(inner: Arc<dyn ArchiveStore>, bytes_per_sec: f64) -> Self {
        Self {
            inner,
            bytes_per_sec: bytes_per_sec.max(1.0),
        }
    }

    fn pace(&self, stream: ByteStream) -> ByteStream {
        Box::new(PacedRead {
            inner: stream,
            rate: self.bytes_per_sec,
            start: Instant::now(),
            total: 0,
            wait: None,
        })
    }
}

#[async_trait]
impl ArchiveStore for Paced {
    async fn put(&self, key: &str, reader: ByteStream) -> Result<ObjectInfo> {
        self.inner.put(key, self.pace(reader)).await
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        Ok(self.pace(self.inner.get(key).await?))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix).await
    }

    async fn unfinished_uploads(&self, prefix: &str) -> Result<Vec<Upload>> {
        self.inner.unfinished_uploads(prefix).await
    }

    async fn abort_upload(&self, upload: &Upload) -> Result<()> {
        self.inner.abort_upload(upload).await
    }
}

/// After each read, waits until the bytes so far are within the rate since the start.
struct PacedRead {
    inner: ByteStream,
    rate: f64,
    start: Instant,
    total: u64,
    wait: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for PacedRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(w) = self.wait.as_mut() {
            ready!(w.as_mut().poll(cx));
            self.wait = None;
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        self.total += (buf.filled().len() - before) as u64;
        let due = self.start + Duration::from_secs_f64(self.total as f64 / self.rate);
        if due > Instant::now() {
            self.wait = Some(Box::pin(sleep_until(due)));
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalDir;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn reads_keep_to_the_rate() {
        let dir = tempfile::tempdir().unwrap();
        let local: Arc<dyn ArchiveStore> = Arc::new(LocalDir::new(dir.path()).unwrap());
        let data = vec![7u8; 200_000];
        local
            .put("a/data", Box::new(std::io::Cursor::new(data.clone())))
            .await
            .unwrap();
        let paced = Paced::new(local, 1_000_000.0);
        let t = std::time::Instant::now();
        let mut got = Vec::new();
        paced
            .get("a/data")
            .await
            .unwrap()
            .read_to_end(&mut got)
            .await
            .unwrap();
        assert_eq!(got, data);
        // 200 kB at 1 MB/s: at least 0.2 s, less the first read's worth.
        assert!(
            t.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
    }
}
