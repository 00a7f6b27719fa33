//! Routing loops: a backend that is Warden itself.
//!
//! A server whose backend is one of Warden's own listeners (edge, API, metrics) sends every
//! join around in a circle. Where the address is written out, [`backend_points_at`] finds
//! it before anything runs: the config check and the API refuse such a server.
//!
//! What a DNS name or a wildcard route's `{1}` resolves to is only known when connecting,
//! so the edge also recognises its own connections: [`Outgoing`] remembers the address
//! pair (local, remote) of every backend connection it opens, and an accepted connection
//! whose (peer, local) pair is one of them is Warden talking to itself. That connection is
//! refused with a login Disconnect, which the first hop relays to the player: a loop costs
//! one hop and the player reads why. Matching the whole pair (not just the peer address)
//! means a local client that happens to reuse a port can never be mistaken for a loop; the
//! price is that a loop through address translation (hairpin NAT) is not recognised, and
//! only the per-network login rate limit stops it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

/// Whether `ip` is an address of this host (binding to it succeeds only if it is).
pub fn is_local_ip(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || UdpSocket::bind((ip, 0)).is_ok()
}

/// Whether a connection to `target` reaches one of `listeners`.
pub fn points_at(listeners: &[SocketAddr], target: SocketAddr) -> bool {
    let ip = match target.ip().to_canonical() {
        // Connecting to 0.0.0.0 / :: reaches the loopback address.
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    listeners.iter().any(|l| {
        let lip = l.ip().to_canonical();
        l.port() == target.port()
            && (lip == ip
                || (lip.is_unspecified()
                    // `[::]` usually takes IPv4 too; `0.0.0.0` only IPv4.
                    && (lip.is_ipv6() || ip.is_ipv4())
                    && is_local_ip(ip)))
    })
}

/// Whether a backend written as `host:port` is one of `listeners`. Only addresses and
/// `localhost` are judged here; other names are caught at run time by [`Outgoing`].
pub fn backend_points_at(listeners: &[SocketAddr], backend: &str) -> bool {
    if let Ok(addr) = backend.parse::<SocketAddr>() {
        return points_at(listeners, addr);
    }
    let Some((host, port)) = backend.rsplit_once(':') else {
        return false;
    };
    let Ok(port) = port.parse::<u16>() else {
        return false;
    };
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case("localhost")
        && [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]
        .into_iter()
        .any(|ip| points_at(listeners, SocketAddr::new(ip, port)))
}

/// The edge's own listeners and its open backend connections.
#[derive(Default)]
pub struct LoopGuard {
    listeners: OnceLock<Vec<SocketAddr>>,
    pub outgoing: Outgoing,
}

impl LoopGuard {
    /// Warden's own listeners (edge, API, metrics). Set once, at startup.
    pub fn set_listeners(&self, listeners: Vec<SocketAddr>) {
        let _ = self.listeners.set(listeners);
    }

    pub fn listeners(&self) -> &[SocketAddr] {
        self.listeners.get().map(Vec::as_slice).unwrap_or_default()
    }
}

/// Backend connections open right now, by local address → remote addresses.
#[derive(Default)]
pub struct Outgoing {
    open: Mutex<HashMap<SocketAddr, Vec<SocketAddr>>>,
    count: AtomicUsize,
}

/// Keeps a backend connection registered while it lives.
pub struct Mark<'a> {
    outgoing: &'a Outgoing,
    pair: Option<(SocketAddr, SocketAddr)>,
}

impl Outgoing {
    /// Registers a backend connection from `local` to `remote` (register it before
    /// sending anything on it, so its first bytes can't arrive unrecognised).
    pub fn mark(&self, local: SocketAddr, remote: SocketAddr) -> Mark<'_> {
        let (local, remote) = (canonical(local), canonical(remote));
        self.open.lock().entry(local).or_default().push(remote);
        self.count.fetch_add(1, Ordering::Relaxed);
        Mark {
            outgoing: self,
            pair: Some((local, remote)),
        }
    }

    /// Whether an accepted connection from `peer` to `local` is one this process opened.
    /// `local` is only asked for (a system call) when `peer` is one of ours.
    pub fn is_ours(&self, peer: SocketAddr, local: impl FnOnce() -> Option<SocketAddr>) -> bool {
        if self.count.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let remotes = match self.open.lock().get(&canonical(peer)) {
            Some(r) => r.clone(),
            None => return false,
        };
        local().is_some_and(|l| remotes.contains(&canonical(l)))
    }
}

impl Drop for Mark<'_> {
    fn drop(&mut self) {
        let Some((local, remote)) = self.pair.take() else {
            return;
        };
        let mut open = self.outgoing.open.lock();
        if let Some(remotes) = open.get_mut(&local) {
            if let Some(i) = remotes.iter().position(|r| *r == remote) {
                remotes.swap_remove(i);
                self.outgoing.count.fetch_sub(1, Ordering::Relaxed);
            }
            if remotes.is_empty() {
                open.remove(&local);
            }
        }
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn own_listeners_are_recognised() {
        let l = [a("0.0.0.0:25565"), a("127.0.0.1:9940")];
        assert!(points_at(&l, a("127.0.0.1:25565")));
        assert!(points_at(&l, a("127.3.2.1:25565")));
        assert!(points_at(&l, a("0.0.0.0:25565")));
        assert!(points_at(&l, a("127.0.0.1:9940")));
        assert!(points_at(&l, a("[::ffff:127.0.0.1]:9940")));
        assert!(!points_at(&l, a("127.0.0.1:25570")));
        // Another host's game server on the same port is not a loop.
        assert!(!points_at(&l, a("192.0.2.10:25565")));
        assert!(!points_at(&l, a("127.0.0.2:9940")));
        assert!(backend_points_at(&l, "localhost:25565"));
        assert!(backend_points_at(&l, "LocalHost.:9940"));
        assert!(!backend_points_at(&l, "mc.internal:25565"));
        assert!(!backend_points_at(&l, "localhost:25570"));
        let v6 = [a("[::]:25565")];
        assert!(points_at(&v6, a("127.0.0.1:25565")));
        assert!(points_at(&v6, a("[::1]:25565")));
    }

    #[test]
    fn outgoing_pairs_are_recognised_while_open() {
        let o = Outgoing::default();
        let (ours, edge) = (a("127.0.0.1:40000"), a("127.0.0.1:25565"));
        let is_ours = |peer, local| o.is_ours(peer, || Some(local));
        assert!(!is_ours(ours, edge));
        let mark = o.mark(ours, edge);
        assert!(is_ours(ours, edge));
        assert!(is_ours(a("[::ffff:127.0.0.1]:40000"), edge));
        // Same port, other destination: a local client reusing the port is not a loop.
        assert!(!is_ours(ours, a("127.0.0.1:25570")));
        let other = o.mark(ours, a("127.0.0.1:25570"));
        drop(mark);
        assert!(!is_ours(ours, edge));
        assert!(is_ours(ours, a("127.0.0.1:25570")));
        drop(other);
        assert!(o.open.lock().is_empty());
    }
}
