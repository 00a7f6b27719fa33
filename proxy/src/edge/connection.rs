//! One client connection from accept to hand-off: limits, PROXY header, first message,
//! route lookup, then status, legacy ping or login.
//!
//! Until it is routed, a connection can be shed to make room for a newer one when the
//! edge is full (see [`crate::shed`]). However it ends, the step that ended it returns an
//! [`Ending`], which [`closed::finish`] counts and logs once.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;

use super::closed::{self, Answered, Closed, Ending};
use super::goodbye::Goodbye;
use super::preroute::{First, Preroute};
use super::Edge;
use crate::limits::Refused;
use crate::metrics::{Malformed, Reject};
use crate::settings::Snapshot;
use crate::shed::Slot;
use crate::wire::{normalize_host, Handshake, Intent};

/// Slack for a PROXY header and the bytes that pipeline behind Login Start.
const BUDGET_SLACK: usize = 1024;

pub(crate) async fn handle(edge: Arc<Edge>, client: TcpStream, peer: SocketAddr) {
    let span = tracing::debug_span!("conn", %peer);
    async move {
        edge.metrics.accepted.inc();
        let snap = edge.snapshot();
        let s = &snap.settings;
        let finish = |ending: Ending| closed::finish(&edge.metrics, s.goodbye_timeout, ending);
        let deadline = Instant::now() + s.handshake_timeout;
        let budget = s.max_handshake_bytes + s.max_login_start_bytes + BUDGET_SLACK;
        let mut pre = Preroute::new(client, deadline, budget, s.legacy_grace);

        let trusted = s.is_trusted_proxy(peer.ip());
        let client_addr = if trusted {
            match pre.proxy_header(peer).await {
                Ok(addr) => addr,
                Err(e) => return finish(Closed::Preroute(e).into()).await,
            }
        } else {
            peer
        };
        let _admitted = match edge.limits.admit(client_addr.ip(), &s.limits) {
            Ok(a) => a,
            Err(Refused::Global) => {
                return finish(Closed::Rejected(Reject::GlobalLimit).into()).await
            }
            Err(Refused::Bucket) => {
                return finish(Closed::Rejected(Reject::BucketLimit).into()).await
            }
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
            answered: Mutex::new(None),
        };
        // The ending is counted, and the goodbye said, inside the race: a connection
        // still unrouted can be shed while it says goodbye.
        tokio::select! {
            biased;
            () = shed => {
                let answered = *conn.answered.lock();
                finish(Closed::Shed(answered).into()).await
            }
            () = async { finish(conn.route(pre, &slot).await).await } => {}
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
    /// What the edge has answered so far, counted even if the connection is shed.
    answered: Mutex<Option<Answered>>,
}

impl Conn<'_> {
    async fn route(&self, mut pre: Preroute, slot: &Slot) -> Ending {
        let (edge, snap) = (self.edge, self.snap);
        let s = &snap.settings;
        let handshake = match pre.first(s.max_handshake_bytes, self.trusted).await {
            Ok(First::Modern(h)) => h,
            Ok(First::Legacy(ping)) => {
                return super::legacy::answer(edge, pre, snap, ping, self.client, &self.answered)
                    .await
                    .into()
            }
            Err(e) => return Closed::Preroute(e).into(),
        };
        // Checked once bytes have arrived: the first hop registers its connection before
        // it sends anything.
        if edge
            .loops
            .outgoing
            .is_ours(self.peer, || pre.client.local_addr().ok())
        {
            return self.refuse_loop(pre, &handshake);
        }
        let Ok(host) = normalize_host(&handshake.address) else {
            return Closed::Malformed(Malformed::BadHost, Some(Reject::BadHandshake)).into();
        };
        let Some(mut target) = snap.table.lookup(&host) else {
            return Closed::UnknownHost { host }.into();
        };
        // A server moved to another node is reached there.
        if let Some(placed) = edge.lifecycle.backend(&target.server) {
            target.backend = placed;
        }
        match handshake.intent {
            Intent::Status => super::status::answer(
                edge,
                pre,
                snap,
                &handshake,
                &host,
                &target,
                self.client,
                &self.answered,
            )
            .await
            .into(),
            Intent::Login | Intent::Transfer => {
                super::login::admit(edge, pre, snap, handshake, target, self.client, slot).await
            }
        }
    }

    /// This connection is the edge's own backend connection: a server's backend leads
    /// back here. The Disconnect travels back over the first hop to the player.
    fn refuse_loop(&self, pre: Preroute, handshake: &Handshake) -> Ending {
        let host = normalize_host(&handshake.address).unwrap_or_default();
        let server = self.snap.table.lookup(&host).map(|t| t.server.id.clone());
        Closed::Loop { host, server }.saying(pre.client, Goodbye::Loop)
    }
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
