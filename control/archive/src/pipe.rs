//! Bridge from the synchronous tar+zstd encoder (run on a blocking thread) to the async
//! `ArchiveStore::put` reader, through a bounded channel so memory stays at a few chunks.
//!
//! The one subtle rule: the reader must never see a clean EOF unless the producer finished.
//! Otherwise a failed producer would look like a short, complete archive and the store would
//! commit it. Hence the explicit `finish()` and the error sent from `Drop`.

use bytes::Bytes;
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

const CHUNK: usize = 1 << 20;
/// Chunks in flight; bounds producer run-ahead to ~4 MiB.
const DEPTH: usize = 4;

pub(crate) fn channel() -> (ChannelWriter, ChannelReader) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
            finished: false,
        },
        ChannelReader {
            rx,
            current: Bytes::new(),
            ended: false,
        },
    )
}

pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Option<Bytes>>>,
    buf: Vec<u8>,
    finished: bool,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Some(Bytes::from(chunk))))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "archive upload stopped"))
    }

    /// Flush the tail and let the reader see EOF. Must be called on the success path only.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.send_buf()?;
        self.finished = true;
        self.tx
            .blocking_send(Ok(None))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "archive upload stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are sent when full; an early flush would only make small uploads parts.
        Ok(())
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.tx.blocking_send(Err(io::Error::other(
                "archive producer stopped before the archive was complete",
            )));
        }
    }
}

pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Option<Bytes>>>,
    current: Bytes,
    ended: bool,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.current.is_empty() {
                let n = self.current.len().min(buf.remaining());
                let chunk = self.current.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(Some(chunk)))) => self.current = chunk,
                Poll::Ready(Some(Ok(None))) => self.ended = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => {
                    // Sender gone without the end marker and without the Drop error (only if
                    // the thread was torn down): never report a clean EOF.
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "archive producer vanished",
                    )));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
