//! Carrying one player's bytes between a TCP socket and a link stream, both ways, on
//! either end of the link (the edge: player ↔ stream; the node: stream ↔ backend).
//!
//! Like Warden's TCP relay, a quiet session holds no buffer: the TCP side is read on
//! readiness into a per-thread scratch buffer, and the stream's data is written out of
//! quinn's own buffers. A side that finishes (EOF) half-closes the other (TCP `shutdown`,
//! QUIC `finish`) and the other direction goes on; an error on either side resets the stream and ends both;
//! no byte in either direction for `idle` ends both too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use prometheus::IntCounter;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The most moved per read: bulk transfers go in 64 KiB steps, a player's packets in one.
const CHUNK: usize = 64 * 1024;

thread_local! {
    /// Shared by every session on the thread: an idle session holds no buffer at all.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; CHUNK]);
}

/// How a pipe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Both sides finished.
    Closed,
    /// The link side finished before sending a single byte (on the edge: the backend hung
    /// up on a player still logging in, who deserves a Disconnect with a reason). The TCP
    /// side is left open for that.
    Silent,
    /// Nothing moved for the idle timeout.
    Idle,
    /// The TCP side failed (e.g. the player's connection reset).
    TcpFailed(String),
    /// The stream failed (reset by the other end, or the link was lost).
    LinkFailed(String),
}

/// Bytes moved, each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub tcp_to_link: u64,
    pub link_to_tcp: u64,
}

/// Relays until both directions ended, one failed, or nothing moved for `idle`. Counts
/// bytes as they move into `to_link` and `from_link`.
pub async fn pipe(
    tcp: &mut TcpStream,
    mut send: SendStream,
    mut recv: RecvStream,
    idle: Duration,
    to_link: &IntCounter,
    from_link: &IntCounter,
) -> (Ended, Moved) {
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let touch = || last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    let (rd, mut wr) = tcp.split();
    let mut moved = Moved::default();
    let (mut up, mut down) = (0u64, 0u64);
    let ended = {
        let a = async {
            loop {
                // No buffer is held while the player is quiet: wait for readiness, read
                // into the thread's scratch buffer, hand quinn an owned copy.
                rd.readable()
                    .await
                    .map_err(|e| Ended::TcpFailed(e.to_string()))?;
                let read = SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    match rd.try_read(&mut s) {
                        Ok(n) => Ok(Some(Bytes::copy_from_slice(&s[..n]))),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
                        Err(e) => Err(Ended::TcpFailed(e.to_string())),
                    }
                })?;
                let Some(bytes) = read else { continue };
                if bytes.is_empty() {
                    let _ = send.finish();
                    return Ok::<(), Ended>(());
                }
                let n = bytes.len() as u64;
                send.write_chunk(bytes)
                    .await
                    .map_err(|e| Ended::LinkFailed(e.to_string()))?;
                up += n;
                to_link.inc_by(n);
                touch();
            }
        };
        let b = async {
            loop {
                // quinn's own buffers, written straight out: nothing copied or kept.
                match recv.read_chunk(CHUNK, true).await {
                    Ok(Some(chunk)) => {
                        wr.write_all(&chunk.bytes)
                            .await
                            .map_err(|e| Ended::TcpFailed(e.to_string()))?;
                        let n = chunk.bytes.len() as u64;
                        down += n;
                        from_link.inc_by(n);
                        touch();
                    }
                    Ok(None) if down == 0 => return Err(Ended::Silent),
                    Ok(None) => {
                        let _ = wr.shutdown().await;
                        return Ok::<(), Ended>(());
                    }
                    Err(e) => return Err(Ended::LinkFailed(e.to_string())),
                }
            }
        };
        tokio::pin!(a, b);
        let mut tick = tokio::time::interval(idle.min(Duration::from_secs(1)));
        let (mut a_done, mut b_done) = (false, false);
        loop {
            tokio::select! {
                r = &mut a, if !a_done => {
                    a_done = true;
                    if let Err(e) = r { break e; }
                }
                r = &mut b, if !b_done => {
                    b_done = true;
                    if let Err(e) = r { break e; }
                }
                _ = tick.tick() => {
                    let quiet = start.elapsed().as_millis() as u64 - last.load(Ordering::Relaxed);
                    if quiet >= idle.as_millis() as u64 {
                        break Ended::Idle;
                    }
                }
            }
            if a_done && b_done {
                break Ended::Closed;
            }
        }
    };
    moved.tcp_to_link = up;
    moved.link_to_tcp = down;
    if ended != Ended::Closed {
        // The other end learns at once, instead of after its own idle timeout.
        let _ = send.reset(VarInt::from_u32(1));
        let _ = recv.stop(VarInt::from_u32(1));
    }
    (ended, moved)
}
