//! Who may hold a connection to Warden's two HTTP listeners (the control API and `/metrics`)
//! and for how long, so that nobody, token or not, can lock them with open sockets.
//!
//! - At most `max_connections_per_source` connections per source address.
//! - At most `max_connections` in all. When all are taken, a new connection takes the place
//!   of the oldest *idle* one (no request in progress: before its first byte, between
//!   keep-alive requests, or still sending its head) of the source address holding the
//!   most connections. A burst of idle sockets therefore costs a newcomer nothing; only
//!   when every connection is running a request is a new one refused.
//! - Requests in progress other than health checks (event streams included) may hold all
//!   but an eighth of the connections; beyond that they get 503 `busy` at once, so the
//!   remaining eighth is always idle or answering health checks, and a health probe always
//!   finds a connection it may take.
//! - Deadlines, enforced by one watchdog per connection: `idle_timeout` without a request
//!   in progress, `request_timeout` from a request's first byte to its head (and, for the
//!   API, its body: see `api::conn`). A request running in a handler, or streaming
//!   events, has no deadline here (event streams are capped per token instead).
//!
//! Every refusal and cut counts in `warden_http_refused_total{listener,reason}`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// One listener's limits (from `[api]` or `[metrics]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub per_source: usize,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
}

/// Why a connection or request was refused or cut: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source address already holds its share of connections.
    PerSource,
    /// Every connection is running a request.
    Full,
    /// An idle connection closed to make room for a new one.
    Evicted,
    IdleTimeout,
    /// Head (or body) not complete within `request_timeout` of its first byte.
    RequestTimeout,
    /// 503: requests in progress hold all but the health checks' share.
    Busy,
    StreamsPerToken,
    StreamsTotal,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PerSource => "per_source",
            Refusal::Full => "full",
            Refusal::Evicted => "evicted",
            Refusal::IdleTimeout => "idle_timeout",
            Refusal::RequestTimeout => "request_timeout",
            Refusal::Busy => "busy",
            Refusal::StreamsPerToken => "streams_per_token",
            Refusal::StreamsTotal => "streams_total",
        }
    }
}

/// `warden_http_refused_total{listener,reason}` and `warden_http_connections{listener}`.
#[derive(Clone)]
pub struct HttpMetrics {
    refused: IntCounterVec,
    connections: IntGaugeVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let refused = IntCounterVec::new(
            Opts::new(
                "warden_http_refused_total",
                "Control API and metrics connections or requests refused or cut, by listener \
                 and reason (per_source, full, evicted, idle_timeout, request_timeout, busy, \
                 streams_per_token, streams_total)",
            ),
            &["listener", "reason"],
        )?;
        let connections = IntGaugeVec::new(
            Opts::new(
                "warden_http_connections",
                "Open control API and metrics connections, by listener",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        Ok(HttpMetrics {
            refused,
            connections,
        })
    }

    pub fn refused(&self, listener: &str, why: Refusal) {
        self.refused
            .with_label_values(&[listener, why.as_str()])
            .inc();
    }
}

/// Where a connection is in its life; deadlines run from the instant.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in progress since then.
    Idle(Instant),
    /// A request's first byte arrived then; its head has not.
    Head(Instant),
    /// A request is being answered.
    Busy,
}

struct Conn {
    source: IpAddr,
    opened: Instant,
    phase: Mutex<Phase>,
    /// Wakes the watchdog: the phase changed or the connection was evicted.
    wake: Notify,
    evicted: AtomicBool,
}

impl Conn {
    fn set(&self, phase: Phase) {
        *self.phase.lock() = phase;
        self.wake.notify_one();
    }

    fn first_byte(&self) {
        let mut phase = self.phase.lock();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            self.wake.notify_one();
        }
    }

    fn evictable(&self) -> bool {
        !matches!(*self.phase.lock(), Phase::Busy)
    }

    /// Returns when the connection must end, and why.
    async fn cut(&self, limits: &Limits) -> Refusal {
        loop {
            let woken = self.wake.notified();
            if self.evicted.load(Ordering::Acquire) {
                return Refusal::Evicted;
            }
            let deadline = match *self.phase.lock() {
                Phase::Idle(t) => Some((t + limits.idle_timeout, Refusal::IdleTimeout)),
                Phase::Head(t) => Some((t + limits.request_timeout, Refusal::RequestTimeout)),
                Phase::Busy => None,
            };
            match deadline {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = woken => {}
                    }
                }
                None => woken.await,
            }
        }
    }
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    per_source: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Arc<Conn>> {
        let conn = self.conns.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&conn.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&conn.source);
            }
        }
        Some(conn)
    }

    /// The idle connection to close for a newcomer: of the source holding the most
    /// connections, the oldest.
    fn victim(&self) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| c.evictable())
            .max_by_key(|(_, c)| {
                let held = self.per_source.get(&c.source).copied().unwrap_or(0);
                (held, std::cmp::Reverse(c.opened))
            })
            .map(|(id, _)| *id)
    }
}

/// One listener's connections.
pub struct Admission {
    listener: &'static str,
    limits: Limits,
    /// Requests in progress (health checks aside) beyond which only health checks are
    /// served.
    busy_cap: usize,
    busy: AtomicUsize,
    table: Mutex<Table>,
    metrics: HttpMetrics,
}

impl Admission {
    pub fn new(listener: &'static str, limits: Limits, metrics: HttpMetrics) -> Arc<Self> {
        Arc::new(Admission {
            listener,
            limits,
            busy_cap: limits.max_connections - limits.max_connections / 8,
            busy: AtomicUsize::new(0),
            table: Mutex::new(Table::default()),
            metrics,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn refused(&self, why: Refusal) {
        self.metrics.refused(self.listener, why);
    }

    /// Takes a connection from `source`, or None (counted) if it must be closed at once.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Option<Admitted> {
        let mut table = self.table.lock();
        if table.per_source.get(&source).copied().unwrap_or(0) >= self.limits.per_source {
            drop(table);
            self.refused(Refusal::PerSource);
            return None;
        }
        if table.conns.len() >= self.limits.max_connections {
            let Some(victim) = table.victim().and_then(|id| table.remove(id)) else {
                drop(table);
                self.refused(Refusal::Full);
                return None;
            };
            victim.evicted.store(true, Ordering::Release);
            victim.wake.notify_one();
        }
        let id = table.next_id;
        table.next_id += 1;
        let now = Instant::now();
        let conn = Arc::new(Conn {
            source,
            opened: now,
            phase: Mutex::new(Phase::Idle(now)),
            wake: Notify::new(),
            evicted: AtomicBool::new(false),
        });
        table.conns.insert(id, conn.clone());
        *table.per_source.entry(source).or_default() += 1;
        self.gauge(table.conns.len());
        Some(Admitted {
            admission: self.clone(),
            id,
            conn,
        })
    }

    fn gauge(&self, open: usize) {
        self.metrics
            .connections
            .with_label_values(&[self.listener])
            .set(open as i64);
    }
}

/// An admitted connection; leaves the table when dropped.
pub struct Admitted {
    admission: Arc<Admission>,
    id: u64,
    conn: Arc<Conn>,
}

impl Admitted {
    /// Runs `serving` (the whole connection) until it ends or the connection must be cut.
    pub async fn serve(&self, serving: impl Future<Output = ()>) {
        tokio::select! {
            _ = serving => {}
            why = self.conn.cut(&self.admission.limits) => self.admission.refused(why),
        }
    }

    /// `io`, noting when a request's first byte arrives.
    pub fn track<S>(&self, io: S) -> Tracked<S> {
        Tracked {
            inner: io,
            conn: self.conn.clone(),
        }
    }

    /// A request's first byte arrived (for streams [`track`](Self::track) cannot wrap).
    pub fn first_byte(&self) {
        self.conn.first_byte();
    }

    /// A request's head has arrived: it is in progress until the returned guard drops.
    /// None (counted, and the connection idle again) if requests in progress already hold
    /// all but the health checks' share and this is not `exempt`.
    pub fn begin(&self, exempt: bool) -> Option<InFlight> {
        let a = &self.admission;
        if !exempt && a.busy.fetch_add(1, Ordering::AcqRel) >= a.busy_cap {
            a.busy.fetch_sub(1, Ordering::AcqRel);
            self.conn.set(Phase::Idle(Instant::now()));
            a.refused(Refusal::Busy);
            return None;
        }
        let started = match *self.conn.phase.lock() {
            Phase::Head(t) => t,
            _ => Instant::now(),
        };
        self.conn.set(Phase::Busy);
        Some(InFlight {
            admission: a.clone(),
            conn: self.conn.clone(),
            deadline: started + a.limits.request_timeout,
            counted: !exempt,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut table = self.admission.table.lock();
        table.remove(self.id);
        self.admission.gauge(table.conns.len());
    }
}

/// A request in progress; the connection is idle again when this drops (its response has
/// been handed to the connection in full).
pub struct InFlight {
    admission: Arc<Admission>,
    conn: Arc<Conn>,
    deadline: Instant,
    /// Counts against the busy cap (health checks do not).
    counted: bool,
}

impl InFlight {
    /// When the request's head and body must have arrived.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.counted {
            self.admission.busy.fetch_sub(1, Ordering::AcqRel);
        }
        self.conn.set(Phase::Idle(Instant::now()));
    }
}

/// A connection's byte stream that notes the first byte of each request.
pub struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.conn.first_byte();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize, per_source: usize) -> Arc<Admission> {
        let metrics = HttpMetrics::register(&Registry::new()).unwrap();
        let limits = Limits {
            max_connections: max,
            per_source,
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        };
        Admission::new("test", limits, metrics)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[tokio::test]
    async fn per_source_cap_and_idle_eviction_from_the_heaviest_source() {
        let a = admission(4, 3);
        let heavy: Vec<_> = (0..3).map(|_| a.admit(ip(1)).unwrap()).collect();
        assert!(a.admit(ip(1)).is_none(), "per-source cap");
        let light = a.admit(ip(2)).unwrap();
        // Full: a newcomer evicts the oldest idle connection of 127.0.0.1, never 127.0.0.2.
        let _busy = light.begin(false).unwrap();
        let newcomer = a.admit(ip(3)).unwrap();
        assert!(heavy[0].conn.evicted.load(Ordering::Acquire));
        assert!(!light.conn.evicted.load(Ordering::Acquire));
        // Everything left busy: refused.
        let _b: Vec<_> = [&heavy[1], &heavy[2], &newcomer]
            .iter()
            .map(|c| c.begin(true).unwrap())
            .collect();
        assert!(a.admit(ip(4)).is_none(), "all busy");
    }

    #[tokio::test]
    async fn busy_cap_keeps_a_share_for_health() {
        let a = admission(8, 8);
        let conns: Vec<_> = (0..8).map(|i| a.admit(ip(i)).unwrap()).collect();
        let held: Vec<_> = conns[..7].iter().map(|c| c.begin(false)).collect();
        assert_eq!(held.iter().filter(|h| h.is_some()).count(), 7);
        // 8 - 8/8 = 7 may be busy; the 8th request is refused unless it is a health check.
        assert!(conns[7].begin(false).is_none());
        assert!(conns[7].begin(true).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn watchdog_cuts_idle_and_slow_heads_not_busy() {
        let a = admission(4, 4);
        let c = a.admit(ip(1)).unwrap();
        assert_eq!(c.conn.cut(&a.limits).await, Refusal::IdleTimeout);
        c.first_byte();
        let t = Instant::now();
        assert_eq!(c.conn.cut(&a.limits).await, Refusal::RequestTimeout);
        assert_eq!(Instant::now() - t, Duration::from_secs(10));
        let flight = c.begin(false).unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(60), c.conn.cut(&a.limits))
                .await
                .is_err(),
            "no deadline while busy"
        );
        drop(flight);
        assert_eq!(c.conn.cut(&a.limits).await, Refusal::IdleTimeout);
    }
}
