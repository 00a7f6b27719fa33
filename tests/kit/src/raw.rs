//! Raw TCP for tests that speak below the peers: send bytes and see how the server ends
//! the connection, or read one Minecraft frame.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Sends `bytes` on a fresh connection and reports how the server ended it.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> RawOutcome {
    let start = Instant::now();
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) => {
            return RawOutcome {
                closed_after: None,
                reply: Vec::new(),
                error: Some(e.to_string()),
            }
        }
    };
    let _ = s.write_all(bytes);
    read_until_close(&mut s, start, wait)
}

/// Reads until EOF/reset or `wait` passes.
pub fn read_until_close(s: &mut TcpStream, start: Instant, wait: Duration) -> RawOutcome {
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = wait.saturating_sub(start.elapsed());
        if left.is_zero() {
            return RawOutcome {
                closed_after: None,
                reply,
                error: None,
            };
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => {
                return RawOutcome {
                    closed_after: Some(start.elapsed()),
                    reply,
                    error: None,
                }
            }
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return RawOutcome {
                    closed_after: None,
                    reply,
                    error: None,
                }
            }
            Err(_) => {
                return RawOutcome {
                    closed_after: Some(start.elapsed()),
                    reply,
                    error: None,
                }
            }
        }
    }
}

#[derive(Debug)]
pub struct RawOutcome {
    /// When the server closed the connection (None: still open when we stopped waiting).
    pub closed_after: Option<Duration>,
    pub reply: Vec<u8>,
    pub error: Option<String>,
}

/// Reads the next Minecraft frame (its body: packet id and fields) within `within`, with
/// `dec` keeping what arrived beyond it; None on close, timeout or a frame over 1 MiB.
pub fn read_frame(
    s: &mut TcpStream,
    dec: &mut warden_wire::FrameDecoder,
    within: Duration,
) -> Option<bytes::Bytes> {
    let until = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(Some(frame)) = dec.next_frame(1 << 20) {
            return Some(frame);
        }
        let left = until.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => dec.extend(&buf[..n]),
        }
    }
}
