//! Per-source and global admission limits.
//!
//! Sources are bucketed by network, not address: a /24 for IPv4 and a /64 for IPv6, since
//! one IPv6 host owns a whole /64 and rotating inside it must not reset its quota (Gate
//! #938). Counting uses pingora-limits' count-min sketches, so memory stays fixed however
//! many addresses a flood uses; the sketches can over-count but never under-count.
//! Status and login have separate rates: a server list refreshing must never lock a player
//! out of joining.
//!
//! The global cap is the smaller of `edge.limits.max_connections` and what the process's
//! file-descriptor limit allows ([`Limits::set_fd_capacity`]). A connection that finds the
//! edge full makes room by shedding the oldest pre-routing connection ([`crate::shed`]);
//! it is refused only when every connection is a routed player.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora_limits::inflight::{Guard, Inflight};
use pingora_limits::rate::Rate;

use crate::shed::Waiting;

/// Tunables, read from the current config snapshot on every check.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    /// Status pings per second per source bucket.
    pub status_per_second: u32,
    /// Login attempts per second per source bucket.
    pub login_per_second: u32,
    /// Concurrent connections per source bucket.
    pub connections_per_bucket: u32,
    /// Concurrent client connections in total.
    pub max_connections: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            status_per_second: 20,
            login_per_second: 5,
            connections_per_bucket: 128,
            max_connections: 50_000,
        }
    }
}

/// The network a client address is counted under.
pub fn bucket(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4) & 0xffff_ff00),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4) & 0xffff_ff00),
            None => (u128::from(v6) & !0xffff_ffff_ffff_ffffu128) | 1,
        },
    }
}

pub struct Limits {
    status: Rate,
    login: Rate,
    inflight: Inflight,
    open: Arc<AtomicUsize>,
    /// Connections the file-descriptor limit allows (unbounded until set).
    fd_capacity: AtomicUsize,
    /// Pre-routing connections, the ones shed first.
    pub waiting: Waiting,
}

/// Holds a connection's place under the global and per-bucket caps.
pub struct Admitted {
    _bucket: Guard,
    open: Arc<AtomicUsize>,
    /// Taking this place shed an older pre-routing connection.
    pub shed_another: bool,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which cap refused a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Global,
    Bucket,
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}

impl Limits {
    pub fn new() -> Self {
        Self {
            status: Rate::new(Duration::from_secs(1)),
            login: Rate::new(Duration::from_secs(1)),
            inflight: Inflight::new(),
            open: Arc::new(AtomicUsize::new(0)),
            fd_capacity: AtomicUsize::new(usize::MAX),
            waiting: Waiting::default(),
        }
    }

    /// Caps client connections at what the file-descriptor budget allows.
    pub fn set_fd_capacity(&self, connections: usize) {
        self.fd_capacity
            .store(connections.max(1), Ordering::Relaxed);
    }

    /// The global cap in force: `max_connections` or the fd capacity, whichever is lower.
    pub fn capacity(&self, s: &LimitSettings) -> usize {
        (s.max_connections as usize).min(self.fd_capacity.load(Ordering::Relaxed))
    }

    /// Takes a place for a new connection from `ip`, or says which cap is full. At the
    /// global cap, the oldest pre-routing connection is shed to make room.
    pub fn admit(&self, ip: IpAddr, s: &LimitSettings) -> Result<Admitted, Refused> {
        let (guard, n) = self.inflight.incr(bucket(ip), 1);
        if n > i64::from(s.connections_per_bucket) as isize {
            return Err(Refused::Bucket);
        }
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        let mut admitted = Admitted {
            _bucket: guard,
            open: self.open.clone(),
            shed_another: false,
        };
        if open > self.capacity(s) {
            if !self.waiting.shed_oldest() {
                return Err(Refused::Global);
            }
            admitted.shed_another = true;
        }
        Ok(admitted)
    }

    /// Counts a status ping; false if the bucket is over its rate.
    pub fn allow_status(&self, ip: IpAddr, s: &LimitSettings) -> bool {
        self.status.observe(&bucket(ip), 1) <= s.status_per_second as isize
    }

    /// Counts a login attempt; false if the bucket is over its rate.
    pub fn allow_login(&self, ip: IpAddr, s: &LimitSettings) -> bool {
        self.login.observe(&bucket(ip), 1) <= s.login_per_second as isize
    }

    /// Client connections open right now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_prefix() {
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "203.0.113.250".parse().unwrap();
        let c: IpAddr = "203.0.114.7".parse().unwrap();
        assert_eq!(bucket(a), bucket(b));
        assert_ne!(bucket(a), bucket(c));
        let x: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let z: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket(x), bucket(y));
        assert_ne!(bucket(x), bucket(z));
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(bucket(mapped), bucket(a));
    }

    #[test]
    fn caps_and_rates() {
        let l = Limits::new();
        let s = LimitSettings {
            status_per_second: 2,
            login_per_second: 1,
            connections_per_bucket: 2,
            max_connections: 3,
        };
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        let g1 = l.admit(ip, &s).unwrap();
        let _g2 = l.admit(ip, &s).unwrap();
        assert_eq!(l.admit(ip, &s).err(), Some(Refused::Bucket));
        let _g3 = l.admit(other, &s).unwrap();
        assert_eq!(l.admit(other, &s).err(), Some(Refused::Global));
        drop(g1);
        assert!(l.admit(ip, &s).is_ok());
        assert_eq!(l.open_connections(), 2);
        assert!(l.allow_status(ip, &s) && l.allow_status(ip, &s));
        assert!(!l.allow_status(ip, &s));
        assert!(l.allow_login(ip, &s));
        assert!(!l.allow_login(ip, &s));
        assert!(l.allow_login(other, &s));
    }

    #[test]
    fn a_full_edge_sheds_the_oldest_waiting_connection() {
        let l = Limits::new();
        let s = LimitSettings {
            connections_per_bucket: 100,
            ..LimitSettings::default()
        };
        l.set_fd_capacity(2);
        assert_eq!(l.capacity(&s), 2);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let _a = l.admit(ip, &s).unwrap();
        let (slot_a, _shed_a) = l.waiting.enter();
        let _b = l.admit(ip, &s).unwrap();
        let (slot_b, _shed_b) = l.waiting.enter();
        assert!(slot_b.routed(), "b is a player now");
        let c = l.admit(ip, &s).unwrap();
        assert!(c.shed_another, "a made room for c");
        assert!(!slot_a.routed(), "a was shed");
        // Only routed connections left: nothing to shed.
        assert_eq!(l.admit(ip, &s).err(), Some(Refused::Global));
    }
}
