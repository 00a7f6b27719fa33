//! The guest's socket, with every read bounded in size and every write bounded in time.
//!
//! A held guest is idle almost all the time, and there may be ten thousand of them, so the
//! read buffer starts empty, grows only as far as one frame needs (at most the configured
//! packet limit) and is given back once it is drained. Time bounds on reads come from the
//! caller (keep-alive deadline, login timeout); a frame the client never finishes simply
//! blocks its keep-alive reply, so the keep-alive deadline ends it.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use warden_wire::{FrameDecoder, WireError};

/// A drained read buffer larger than this is released instead of kept for the next frame.
const KEEP_BUFFER: usize = 1024;

/// Why talking to the guest stopped.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("client closed the connection")]
    Closed,
    #[error("client i/o: {0}")]
    Io(#[from] io::Error),
    #[error("client did not read for {0:?}")]
    WriteStalled(Duration),
    #[error("{0}")]
    Wire(#[from] WireError),
}

pub struct Conn {
    stream: TcpStream,
    decoder: FrameDecoder,
    max_packet: usize,
    write_timeout: Duration,
}

impl Conn {
    pub fn new(stream: TcpStream, max_packet: usize, write_timeout: Duration) -> Self {
        Self {
            stream,
            decoder: FrameDecoder::default(),
            max_packet,
            write_timeout,
        }
    }

    /// Takes what the proxy already read: handshake and Login Start are skipped, anything
    /// after them stays buffered as if it had just arrived.
    pub fn replay(&mut self, received: &[u8]) -> Result<(), WireError> {
        self.decoder.extend(received);
        for _ in 0..2 {
            // The proxy read both under its own (smaller) limits.
            if self
                .decoder
                .next_frame(self.max_packet.max(received.len()))?
                .is_none()
            {
                return Err(WireError::Truncated);
            }
        }
        Ok(())
    }

    /// The next frame body (packet id + fields). Cancel-safe: bytes read before a
    /// cancellation stay buffered.
    pub async fn read_frame(&mut self) -> Result<Bytes, ConnError> {
        loop {
            if let Some(frame) = self.decoder.next_frame(self.max_packet)? {
                return Ok(frame);
            }
            if self.decoder.buffered().is_empty()
                && self.decoder.buffer_mut().capacity() > KEEP_BUFFER
            {
                self.decoder = FrameDecoder::default();
            }
            if self.stream.read_buf(self.decoder.buffer_mut()).await? == 0 {
                return Err(ConnError::Closed);
            }
        }
    }

    /// Writes `bytes` whole, or fails if the client stops reading for the write timeout.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        match timeout(self.write_timeout, self.stream.write_all(bytes)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ConnError::WriteStalled(self.write_timeout)),
        }
    }

    /// Half-closes and lets the client read what was sent (Transfer, Disconnect) before the
    /// socket goes: closing with unread client bytes would send a reset, and a reset can
    /// discard our last packet before the client has read it.
    pub async fn close(&mut self, linger: Duration) {
        let deadline = Instant::now() + linger;
        if tokio::time::timeout_at(deadline, self.stream.shutdown())
            .await
            .is_err()
        {
            return;
        }
        // An empty buffer: `read_buf` gives it 64 bytes, and `clear` keeps them.
        let mut buf = bytes::BytesMut::new();
        loop {
            buf.clear();
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    }
}
