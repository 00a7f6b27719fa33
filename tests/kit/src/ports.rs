//! Loopback ports and sockets: a port that is free, and a connection from a chosen
//! 127.x.y.z source address (to spread test clients over addresses and /24s).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
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
