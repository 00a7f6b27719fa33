//! Carrying bytes both ways between a player and a backend.
//!
//! Most proxied sessions are idle most of the time (a player sends a few KB/s), so what a
//! session costs while idle decides how many fit on a node. `copy_bidirectional` keeps two
//! 8 KiB buffers per session forever; this relay keeps none. It waits for readiness, reads
//! into a per-thread 64 KiB buffer, and writes straight out; only when the receiver can't
//! take everything does a session briefly own a buffer for the remainder. The big shared
//! buffer also means bulk transfers move 64 KiB per syscall.
//!
//! A direction that fills the whole 64 KiB buffer in one read is carrying bulk data (a
//! chunk burst, a world download); it switches to `splice(2)` through a pipe of its own
//! ([`crate::splice`]), so the kernel moves the pages and Warden never copies them. Small
//! Minecraft packets stay on the buffer path, so idle sessions never own a pipe.
//!
//! End of stream on one side becomes a write shutdown on the other (half-close), so a
//! side that is done sending can still receive; the second end of stream needs none, since
//! both sockets close right after and the close sends the FIN. A session with no bytes in
//! either direction for `idle_timeout` is closed.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

const CHUNK: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; CHUNK]);
}

/// How a relay ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed their sending half.
    Closed,
    /// The backend closed or failed before sending a single byte: the player is still in
    /// the login state and deserves a Disconnect with a reason.
    BackendSilent,
    IdleTimeout,
}

/// Bytes moved, per direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub client_to_backend: u64,
    pub backend_to_client: u64,
}

/// Shared by both directions: when anything last moved, for the idle timer, and whether
/// one direction has ended.
struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
    one_ended: AtomicBool,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }
}

/// Relays until both directions end, one side fails, or the session idles out.
pub async fn relay(
    client: &TcpStream,
    backend: &TcpStream,
    idle_timeout: Duration,
    counters: (IntCounter, IntCounter),
) -> (io::Result<Ended>, Moved) {
    let activity = Activity {
        origin: Instant::now(),
        last_ms: AtomicU64::new(0),
        one_ended: AtomicBool::new(false),
    };
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let c2b = pump(client, backend, &up, &counters.0, &activity, false);
    let b2c = pump(backend, client, &down, &counters.1, &activity, true);
    let idle = async {
        loop {
            let left = idle_timeout.saturating_sub(activity.idle_for());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left).await;
        }
    };
    tokio::pin!(c2b, b2c, idle);
    let (mut c2b_done, mut b2c_done) = (false, false);
    let result = loop {
        tokio::select! {
            r = &mut c2b, if !c2b_done => {
                c2b_done = true;
                if let Err(e) = r {
                    // Writing to a backend that reset before saying anything fails here
                    // first: the player is still logging in and deserves the reason.
                    if down.load(Ordering::Relaxed) == 0 {
                        break Ok(Ended::BackendSilent);
                    }
                    break Err(e);
                }
            }
            r = &mut b2c, if !b2c_done => {
                b2c_done = true;
                let silent = down.load(Ordering::Relaxed) == 0;
                match r {
                    Err(_) | Ok(()) if silent => break Ok(Ended::BackendSilent),
                    Err(e) => break Err(e),
                    Ok(()) => {}
                }
            }
            _ = &mut idle => break Ok(Ended::IdleTimeout),
        }
        if c2b_done && b2c_done {
            break Ok(Ended::Closed);
        }
    };
    let moved = Moved {
        client_to_backend: up.load(Ordering::Relaxed),
        backend_to_client: down.load(Ordering::Relaxed),
    };
    (result, moved)
}

/// Copies `src` to `dst` until `src` ends, then shuts down `dst`'s sending half — unless
/// `keep_open_if_silent` and nothing was carried: a backend that hangs up before saying
/// anything leaves the player's socket writable for the Disconnect that explains it.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    total: &AtomicU64,
    counter: &IntCounter,
    activity: &Activity,
    keep_open_if_silent: bool,
) -> io::Result<()> {
    let mut backlog: Vec<u8> = Vec::new();
    loop {
        src.readable().await?;
        let read = SCRATCH.with(|cell| -> io::Result<Option<usize>> {
            let mut buf = cell.borrow_mut();
            let n = match read_drained(src, &mut buf[..]) {
                Ok(0) => return Ok(Some(0)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut written = 0;
            while written < n {
                match dst.try_write(&buf[written..n]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(w) => written += w,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if written < n {
                backlog.extend_from_slice(&buf[written..n]);
            }
            Ok(Some(n))
        })?;
        match read {
            None => continue,
            Some(0) => {
                // The other direction ended already: the relay returns now and both
                // sockets close, which sends this FIN too (one system call less).
                let last = activity.one_ended.swap(true, Ordering::AcqRel);
                let silent = keep_open_if_silent && total.load(Ordering::Relaxed) == 0;
                if !last && !silent {
                    let _ = SockRef::from(dst).shutdown(Shutdown::Write);
                }
                return Ok(());
            }
            Some(n) => {
                total.fetch_add(n as u64, Ordering::Relaxed);
                counter.inc_by(n as u64);
                activity.touch();
                if !backlog.is_empty() {
                    // Boxed for the same reason as the splice path: rare, and every
                    // idle session would carry its size.
                    Box::pin(flush_backlog(dst, &mut backlog)).await?;
                }
                if n == CHUNK {
                    if let Ok(pipe) = crate::splice::Pipe::new() {
                        // Boxed: only bulk directions take this path, and an idle
                        // session must not carry its future's size.
                        return Box::pin(crate::splice::pump(src, dst, pipe, &|n| {
                            total.fetch_add(n as u64, Ordering::Relaxed);
                            counter.inc_by(n as u64);
                            activity.touch();
                        }))
                        .await;
                    }
                }
            }
        }
    }
}

/// Reads what `src` holds, like `try_read`. A read shorter than `buf` has drained the
/// socket: its readiness is cleared there and then (as tokio's own `poll_read` does), so
/// the next wait goes to the poller instead of to a read that would only say EAGAIN. One
/// system call less per packet each way. Data that arrives meanwhile sets readiness anew;
/// tokio's clear only takes the readiness it handed out.
fn read_drained(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len();
    let mut short = None;
    let r = src.try_io(Interest::READABLE, || {
        let n = (&*SockRef::from(src)).read(buf)?;
        if n > 0 && n < len {
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match short {
        Some(n) => Ok(n),
        None => r,
    }
}

/// Writes out what the receiver couldn't take at once, then frees the buffer so an idle
/// session holds no memory.
async fn flush_backlog(dst: &TcpStream, backlog: &mut Vec<u8>) -> io::Result<()> {
    let mut off = 0;
    while off < backlog.len() {
        dst.writable().await?;
        match dst.try_write(&backlog[off..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(w) => off += w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    *backlog = Vec::new();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    fn counters() -> (IntCounter, IntCounter) {
        (
            IntCounter::new("a", "a").unwrap(),
            IntCounter::new("b", "b").unwrap(),
        )
    }

    #[tokio::test]
    async fn carries_bytes_and_half_close() {
        let (mut player, client_side) = pair().await;
        let (backend_side, mut server) = pair().await;
        let task = tokio::spawn(async move {
            relay(
                &client_side,
                &backend_side,
                Duration::from_secs(30),
                counters(),
            )
            .await
        });
        let big = vec![7u8; 3 * 1024 * 1024];
        let send = big.clone();
        let writer = tokio::spawn(async move {
            player.write_all(&send).await.unwrap();
            player.shutdown().await.unwrap();
            let mut back = Vec::new();
            player.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), big.len());
        server.write_all(b"bye").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"bye");
        let (ended, moved) = task.await.unwrap();
        assert_eq!(ended.unwrap(), Ended::Closed);
        assert_eq!(
            moved,
            Moved {
                client_to_backend: big.len() as u64,
                backend_to_client: 3
            }
        );
    }

    #[tokio::test]
    async fn silent_backend_and_idle() {
        let (mut player, client_side) = pair().await;
        let (backend_side, server) = pair().await;
        drop(server);
        let (ended, _) = relay(
            &client_side,
            &backend_side,
            Duration::from_secs(30),
            counters(),
        )
        .await;
        assert_eq!(ended.unwrap(), Ended::BackendSilent);
        // The player's side must still carry the Disconnect that explains it.
        let mut client_side = client_side;
        client_side.write_all(b"why").await.unwrap();
        client_side.shutdown().await.unwrap();
        let mut got = Vec::new();
        player.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"why");

        let (_player, client_side) = pair().await;
        let (backend_side, _server) = pair().await;
        let (ended, _) = relay(
            &client_side,
            &backend_side,
            Duration::from_millis(200),
            counters(),
        )
        .await;
        assert_eq!(ended.unwrap(), Ended::IdleTimeout);
    }
}
