//! One client connection from accept to hand-off: limits, PROXY header, first message,
//! route lookup, then status, legacy ping or login.
//!
//! Until it is routed, a connection can be shed to make room for a newer one when the
//! edge is full (see [`crate::shed`]).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, warn, Instrument};

use super::goodbye::{self, Goodbye};
use super::preroute::{First, Preroute, PrerouteError};
use super::Edge;
use crate::limits::Refused;
use crate::metrics::Reject;
use crate::settings::Snapshot;
use crate::shed::Slot;
use crate::wire::{log_safe, normalize_host, Handshake, Intent};

/// Slack for a PROXY header and the bytes that pipeline behind Login Start.
const BUDGET_SLACK: usize = 1024;

pub(crate) async fn handle(edge: Arc<Edge>, client: TcpStream) {
    let Ok(peer) = client.peer_addr() else { return };
    let span = tracing::debug_span!("conn", %peer);
    async move {
        edge.metrics.accepted.inc();
        let snap = edge.snapshot();
        let s = &snap.settings;
        let deadline = Instant::now() + s.handshake_timeout;
        let budget = s.max_handshake_bytes + s.max_login_start_bytes + BUDGET_SLACK;
        let mut pre = Preroute::new(client, deadline, budget);

        let trusted = s.is_trusted_proxy(peer.ip());
        let client_addr = if trusted {
            match pre.proxy_header(peer).await {
                Ok(addr) => addr,
                Err(e) => return reject(&edge, &e),
            }
        } else {
            peer
        };
        let _admitted = match edge.limits.admit(client_addr.ip(), &s.limits) {
            Ok(a) => a,
            Err(Refused::Global) => return edge.metrics.reject(Reject::GlobalLimit),
            Err(Refused::Bucket) => return edge.metrics.reject(Reject::BucketLimit),
        };
        edge.metrics.connections_open.inc();
        let _open = scopeguard(&edge);
        let (slot, shed) = edge.limits.waiting.enter();
        let conn = Conn {
            edge: &edge,
            snap: &snap,
            peer,
            client: client_addr,
            trusted,
        };
        tokio::select! {
            biased;
            () = shed => {
                edge.metrics.connections_shed.inc();
                debug!("shed before routing to make room for a newer connection");
            }
            () = conn.route(pre, &slot) => {}
        }
    }
    .instrument(span)
    .await
}

struct Conn<'a> {
    edge: &'a Edge,
    snap: &'a Snapshot,
    /// The TCP peer (a trusted proxy's address when there is a PROXY header).
    peer: SocketAddr,
    /// The player's address.
    client: SocketAddr,
    trusted: bool,
}

impl Conn<'_> {
    async fn route(&self, mut pre: Preroute, slot: &Slot) {
        let (edge, snap) = (self.edge, self.snap);
        let s = &snap.settings;
        let handshake = match pre.first(s.max_handshake_bytes, self.trusted).await {
            Ok(First::Modern(h)) => h,
            Ok(First::Legacy(ping)) => {
                return super::legacy::answer(edge, pre, snap, ping, self.client).await
            }
            Err(e) => return reject(edge, &e),
        };
        // Checked once bytes have arrived: the first hop registers its connection before
        // it sends anything.
        if edge
            .loops
            .outgoing
            .is_ours(self.peer, || pre.client.local_addr().ok())
        {
            return self.refuse_loop(pre, &handshake).await;
        }
        let Ok(host) = normalize_host(&handshake.address) else {
            edge.metrics.handshake_error("bad_host");
            return edge.metrics.reject(Reject::BadHandshake);
        };
        let Some(mut target) = snap.table.lookup(&host) else {
            debug!(host = %log_safe(&host), "unknown host");
            return edge.metrics.reject(Reject::UnknownHost);
        };
        // A server moved to another node is reached there.
        if let Some(placed) = edge.lifecycle.backend(&target.server) {
            target.backend = placed;
        }
        match handshake.intent {
            Intent::Status => {
                super::status::answer(edge, pre, snap, &handshake, &host, &target, self.client)
                    .await
            }
            Intent::Login | Intent::Transfer => {
                super::login::admit(edge, pre, snap, handshake, target, self.client, slot).await
            }
        }
    }

    /// This connection is the edge's own backend connection: a server's backend leads
    /// back here. The Disconnect travels back over the first hop to the player.
    async fn refuse_loop(&self, pre: Preroute, handshake: &Handshake) {
        self.edge.metrics.reject(Reject::Loop);
        let host = normalize_host(&handshake.address).unwrap_or_default();
        let server = self
            .snap
            .table
            .lookup(&host)
            .map(|t| t.server.id.to_string());
        warn!(
            host = %log_safe(&host),
            server = %log_safe(server.as_deref().unwrap_or("-")),
            "routing loop: a backend address leads back to this Warden; join refused after one hop"
        );
        goodbye::say(pre.client, &Goodbye::Loop, goodbye::WITHIN).await
    }
}

fn reject(edge: &Edge, e: &PrerouteError) {
    debug!(error = %log_safe(e), "closed before routing");
    let reason = match e {
        PrerouteError::Timeout => Reject::Timeout,
        PrerouteError::UntrustedProxyHeader => Reject::UntrustedProxyHeader,
        PrerouteError::ProxyHeader(_) => Reject::BadProxyHeader,
        PrerouteError::Closed => return,
        _ => Reject::BadHandshake,
    };
    if !matches!(e, PrerouteError::Timeout) {
        edge.metrics.handshake_error(e.kind());
    }
    edge.metrics.reject(reason);
}

/// Decrements the open-connections gauge however the connection ends.
struct OpenGauge<'a>(&'a Edge);

impl Drop for OpenGauge<'_> {
    fn drop(&mut self) {
        self.0.metrics.connections_open.dec();
    }
}

fn scopeguard(edge: &Edge) -> OpenGauge<'_> {
    OpenGauge(edge)
}
