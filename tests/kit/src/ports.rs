//! Loopback ports and sockets: a port that is free, and a connection from a chosen
//! 127.x.y.z source address (to spread test clients over addresses and /24s).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    // The kernel may hand the same port to two binds in a row once the first is released:
    // a port given out once in this process is never given out again (a fleet test that
    // drew its backend's port equal to an appliance's listen port failed on that).
    static GIVEN: parking_lot::Mutex<Vec<u16>> = parking_lot::Mutex::new(Vec::new());
    let mut given = GIVEN.lock();
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no port not already given out in 1000 tries");
}

/// A TCP connection to `dst` from the loopback address `src` (any 127.x.y.z): spreads test
/// clients over source addresses and /24s. Connecting gives up after `within`.
pub fn connect_from(
    src: Ipv4Addr,
    dst: SocketAddr,
    within: Duration,
) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(dst), Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((src, 0)).into())?;
    socket.connect_timeout(&dst.into(), within)?;
    Ok(socket.into())
}
