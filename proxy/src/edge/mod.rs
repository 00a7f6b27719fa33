//! The edge: a player's TCP connection from accept to its backend, in one folder.
//!
//! Read a login in this order; each file hands on to the next and none calls back:
//!
//! 1. `accept.rs`: every runtime thread accepts players on the listening sockets
//!    ([`EdgeService`], a pingora service: on a graceful upgrade pingora hands the sockets
//!    to the new binary while this process keeps its live sessions).
//! 2. `connection.rs`: limits, PROXY header, first message, route lookup; then a status
//!    request (`status.rs`), a legacy ping (`legacy.rs`) or a login.
//! 3. `preroute.rs`: how every read before routing is bounded in time and bytes.
//! 4. `login.rs`: Login Start, a returning player's ticket (`returning.rs`), and the
//!    control plane's [`crate::admission`]: forward, refuse or hold.
//! 5. `forward.rs`: connect the backend, replay the handshake and Login Start, then
//!    [`crate::relay`] carries the bytes; or, when the server runs on another node that
//!    offers a QUIC link, `linked.rs`: a stream on the warm link carries the join instead
//!    (the node's end is [`crate::landing`]).
//! 6. `closed.rs`: every step returns how the connection ended; it is counted and logged
//!    once, then the player hears the goodbye, if any (`goodbye.rs`: every Disconnect text
//!    the edge sends).

mod accept;
mod closed;
mod connection;
mod forward;
mod goodbye;
mod legacy;
mod linked;
mod login;
mod preroute;
mod returning;
mod status;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::admission::Lifecycle;
use crate::limits::Limits;
use crate::loopguard::LoopGuard;
use crate::metrics::Metrics;
use crate::sessions::Sessions;
use crate::settings::Snapshot;
use crate::status::StatusCache;

pub use accept::EdgeService;

/// Most status cache keys kept at once.
const STATUS_CACHE_ENTRIES: usize = 16_384;

/// State shared by every connection.
pub struct Edge {
    snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub sessions: Sessions,
    limits: Limits,
    status: StatusCache,
    lifecycle: Arc<dyn Lifecycle>,
    /// Key of the anteroom's transfer tickets; without it, returning players (intent 3)
    /// are not asked for a ticket and are admitted like any join.
    ticket_key: std::sync::OnceLock<Arc<[u8]>>,
    /// Warden's own listeners and backend connections, to refuse routing loops.
    pub loops: LoopGuard,
    /// Warm QUIC links to the nodes that offer them; without it every player goes to its
    /// backend over TCP.
    link: std::sync::OnceLock<Arc<warden_link::dial::Dialer>>,
}

impl Edge {
    /// `sessions` is shared with the control plane, which reads live counts from it.
    pub fn new(
        snapshot: Snapshot,
        metrics: Arc<Metrics>,
        lifecycle: Arc<dyn Lifecycle>,
        sessions: Sessions,
    ) -> Arc<Self> {
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            sessions,
            limits: Limits::new(),
            status: StatusCache::new(STATUS_CACHE_ENTRIES),
            lifecycle,
            ticket_key: std::sync::OnceLock::new(),
            loops: LoopGuard::default(),
            link: std::sync::OnceLock::new(),
        })
    }

    /// Reaches servers on nodes that offer a link through `dialer`. Set once, at startup.
    pub fn use_link(&self, dialer: Arc<warden_link::dial::Dialer>) {
        let _ = self.link.set(dialer);
    }

    /// Enables ticket checks for returning players. Set once, at startup.
    pub fn set_ticket_key(&self, key: Arc<[u8]>) {
        let _ = self.ticket_key.set(key);
    }

    /// Replaces routes and settings atomically; connections in flight keep their snapshot.
    pub fn swap(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Caps client connections at what the file-descriptor budget allows (see
    /// [`Limits::set_fd_capacity`]). Set at startup.
    pub fn set_fd_capacity(&self, connections: usize) {
        self.limits.set_fd_capacity(connections);
        self.metrics
            .connections_fd_capacity
            .set(i64::try_from(connections).unwrap_or(i64::MAX));
    }

    /// Whether this edge's link to `node` is up; None without a link.
    pub fn link_up(&self, node: &str) -> Option<bool> {
        self.link.get().map(|d| d.is_up(node))
    }

    /// The control plane, as the data plane sees it.
    /// What the node running `server` last said of it on the link's control stream.
    pub(crate) fn told(
        &self,
        server: &crate::route::Server,
    ) -> Option<Arc<warden_link::control::Told>> {
        let dialer = self.link.get()?;
        let (node, _) = self.lifecycle.link(server)?;
        dialer.told(&node, &server.id)
    }

    pub(crate) fn lifecycle(&self) -> &Arc<dyn Lifecycle> {
        &self.lifecycle
    }

    /// Client connections open at the edge right now (sessions and pre-routing).
    pub fn open_connections(&self) -> usize {
        self.limits.open_connections()
    }
}
