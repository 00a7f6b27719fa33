//! One client connection from accept to hand-off: limits, PROXY header, first message,
//! route lookup, then status, legacy ping or login.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, Instrument};

use super::preroute::{First, Preroute, PrerouteError};
use super::Edge;
use crate::limits::Refused;
use crate::metrics::Reject;
use crate::wire::{normalize_host, Intent};

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

        let handshake = match pre.first(s.max_handshake_bytes, trusted).await {
            Ok(First::Modern(h)) => h,
            Ok(First::Legacy(ping)) => {
                return super::legacy::answer(&edge, pre, &snap, ping, client_addr).await
            }
            Err(e) => return reject(&edge, &e),
        };
        let Ok(host) = normalize_host(&handshake.address) else {
            edge.metrics.handshake_error("bad_host");
            return edge.metrics.reject(Reject::BadHandshake);
        };
        let Some(mut target) = snap.table.lookup(&host) else {
            debug!(%host, "unknown host");
            return edge.metrics.reject(Reject::UnknownHost);
        };
        // A server moved to another node is reached there.
        if let Some(placed) = edge.lifecycle.backend(&target.server) {
            target.backend = placed;
        }
        match handshake.intent {
            Intent::Status => {
                super::status::answer(&edge, pre, &snap, &handshake, &host, &target, client_addr)
                    .await
            }
            Intent::Login | Intent::Transfer => {
                super::login::admit(&edge, pre, &snap, handshake, target, client_addr).await
            }
        }
    }
    .instrument(span)
    .await
}

fn reject(edge: &Edge, e: &PrerouteError) {
    debug!(error = %e, "closed before routing");
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
