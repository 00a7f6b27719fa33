//! Polling until something holds: a condition, or a listener on an address.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Polls `ok` every 200 ms until it holds; panics with `what` and `log()` after `within`.
pub fn wait_for(
    what: &str,
    within: Duration,
    log: impl Fn() -> String,
    mut ok: impl FnMut() -> bool,
) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}\n{}", log());
}
