//! How often players may wake servers. A wake costs money (the machine runs for at least
//! `sleep_after`) and a login is all it takes, so each wake a player causes spends a token
//! from their network's budget (a /24 or /64, across all servers) and one from the
//! server's. Both refill evenly over an hour. Joining a wake already under way is free,
//! and operators (the API) are never counted.
//!
//! Memory stays small: a bucket only exists once a wake spent from it, every spend needs a
//! token from a server's budget too, and full buckets are dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use warden_proxy::limits::bucket;
use warden_proxy::status::render::eta_text;

const HOUR: Duration = Duration::from_secs(3600);
/// Past this many buckets, full ones are dropped on the next spend.
const PRUNE_ABOVE: usize = 1024;

/// Which budget ran out, and when it has a token again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    Source(Duration),
    Server(Duration),
}

impl Exhausted {
    /// The `result` label of `warden_wake_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            Exhausted::Source(_) => "refused_source",
            Exhausted::Server(_) => "refused_server",
        }
    }

    /// What the player is told.
    pub fn message(self, server: &str) -> String {
        match self {
            Exhausted::Source(wait) => format!(
                "Too many servers were started from your network recently, so {server} stays \
                 asleep for now. Please try again in {}.",
                eta_text(Some(wait))
            ),
            Exhausted::Server(wait) => format!(
                "{server} has been started too often recently and stays asleep for now. Please \
                 try again in {}.",
                eta_text(Some(wait))
            ),
        }
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Budget<K> {
    /// Tokens per hour, and the most a bucket holds; 0 means no limit.
    per_hour: u32,
    buckets: HashMap<K, Bucket>,
}

impl<K: std::hash::Hash + Eq + Clone> Budget<K> {
    fn new(per_hour: u32) -> Self {
        Self {
            per_hour,
            buckets: HashMap::new(),
        }
    }

    /// Tokens in `key`'s bucket at `now`.
    fn tokens(&self, key: &K, now: Instant) -> f64 {
        let cap = f64::from(self.per_hour);
        match self.buckets.get(key) {
            None => cap,
            Some(b) => {
                let refill = now.saturating_duration_since(b.at).as_secs_f64() / HOUR.as_secs_f64();
                (b.tokens + refill * cap).min(cap)
            }
        }
    }

    /// None if a token is there; otherwise how long until one is.
    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        if self.per_hour == 0 {
            return None;
        }
        let have = self.tokens(key, now);
        (have < 1.0).then(|| HOUR.mul_f64((1.0 - have) / f64::from(self.per_hour)))
    }

    fn spend(&mut self, key: &K, now: Instant) {
        if self.per_hour == 0 {
            return;
        }
        let tokens = self.tokens(key, now) - 1.0;
        if self.buckets.len() >= PRUNE_ABOVE {
            let cap = f64::from(self.per_hour);
            let full: Vec<K> = self
                .buckets
                .keys()
                .filter(|k| self.tokens(k, now) >= cap)
                .cloned()
                .collect();
            for k in full {
                self.buckets.remove(&k);
            }
        }
        self.buckets.insert(key.clone(), Bucket { tokens, at: now });
    }
}

pub struct WakeBudget {
    inner: parking_lot::Mutex<(Budget<u128>, Budget<String>)>,
}

impl WakeBudget {
    /// Wakes per hour per source network and per server; 0 turns that budget off.
    pub fn new(per_source: u32, per_server: u32) -> Self {
        Self {
            inner: parking_lot::Mutex::new((Budget::new(per_source), Budget::new(per_server))),
        }
    }

    /// Whether a player at `ip` could wake `server` now; spends nothing.
    pub fn check(&self, ip: IpAddr, server: &str) -> Result<(), Exhausted> {
        self.check_at(ip, server, Instant::now())
    }

    /// Spends a token from both budgets, or from neither if either is empty.
    pub fn spend(&self, ip: IpAddr, server: &str) -> Result<(), Exhausted> {
        self.spend_at(ip, server, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, server: &str, now: Instant) -> Result<(), Exhausted> {
        let g = self.inner.lock();
        if let Some(w) = g.0.wait(&bucket(ip), now) {
            return Err(Exhausted::Source(w));
        }
        if let Some(w) = g.1.wait(&server.to_owned(), now) {
            return Err(Exhausted::Server(w));
        }
        Ok(())
    }

    fn spend_at(&self, ip: IpAddr, server: &str, now: Instant) -> Result<(), Exhausted> {
        self.check_at(ip, server, now)?;
        let mut g = self.inner.lock();
        g.0.spend(&bucket(ip), now);
        g.1.spend(&server.to_owned(), now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_network_spends_its_budget_and_another_network_still_wakes() {
        let b = WakeBudget::new(2, 100);
        let t0 = Instant::now();
        assert!(b.spend_at(ip("10.0.0.1"), "a", t0).is_ok());
        // Same /24, another address and server: same budget.
        assert!(b.spend_at(ip("10.0.0.200"), "b", t0).is_ok());
        let Err(Exhausted::Source(wait)) = b.spend_at(ip("10.0.0.3"), "c", t0) else {
            panic!("third wake from the /24 allowed");
        };
        assert_eq!(wait, Duration::from_secs(1800));
        assert!(b.check_at(ip("10.0.1.1"), "c", t0).is_ok());
        // Half an hour later one token is back.
        assert!(b
            .spend_at(ip("10.0.0.3"), "c", t0 + Duration::from_secs(1800))
            .is_ok());
    }

    #[test]
    fn a_server_spends_its_budget_whoever_asks_and_a_refusal_spends_nothing() {
        let b = WakeBudget::new(1, 2);
        let t0 = Instant::now();
        assert!(b.spend_at(ip("10.0.1.1"), "a", t0).is_ok());
        assert!(b.spend_at(ip("10.0.2.1"), "a", t0).is_ok());
        assert!(matches!(
            b.spend_at(ip("10.0.3.1"), "a", t0),
            Err(Exhausted::Server(_))
        ));
        // 10.0.3.0/24 was refused by the server's budget: its own is untouched.
        assert!(b.spend_at(ip("10.0.3.1"), "b", t0).is_ok());
        // IPv6: one /64 is one source.
        let v6 = WakeBudget::new(1, 0);
        assert!(v6.spend_at(ip("2001:db8::1"), "a", t0).is_ok());
        assert!(v6.spend_at(ip("2001:db8::ffff:1"), "b", t0).is_err());
        assert!(v6.spend_at(ip("2001:db8:0:1::1"), "b", t0).is_ok());
    }

    #[test]
    fn zero_is_no_limit_and_full_buckets_are_dropped() {
        let b = WakeBudget::new(0, 0);
        let t0 = Instant::now();
        for i in 0..100u32 {
            assert!(b
                .spend_at(ip("10.0.0.1"), "a", t0 + Duration::from_secs(i.into()))
                .is_ok());
        }
        assert!(b.inner.lock().0.buckets.is_empty());
        let b = WakeBudget::new(5, 0);
        for i in 0..(PRUNE_ABOVE as u32 + 10) {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(i << 8));
            assert!(b.spend_at(addr, "a", t0).is_ok());
        }
        // An hour on, every bucket is full again and goes at the next spend.
        assert!(b.spend_at(ip("10.9.9.9"), "a", t0 + HOUR).is_ok());
        assert_eq!(b.inner.lock().0.buckets.len(), 1);
    }

    #[test]
    fn messages_say_which_budget_and_when() {
        let m = Exhausted::Source(Duration::from_secs(600)).message("survival");
        assert!(m.contains("your network") && m.contains("survival") && m.contains("~10 min"));
        let m = Exhausted::Server(Duration::from_secs(30)).message("survival");
        assert!(m.contains("too often") && m.contains("~30 s"), "{m}");
    }
}
