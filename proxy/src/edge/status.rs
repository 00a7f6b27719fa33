//! Answering a server-list ping at the edge.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::time::{timeout_at, Instant};

use super::preroute::Preroute;
use super::Edge;
use crate::lifecycle::ServerState;
use crate::metrics::Reject;
use crate::route::Resolved;
use crate::settings::Snapshot;
use crate::status::fetch::StatusQuery;
use crate::status::render::{standin_frame, Standin};
use crate::status::{fetch_status, BackendStatus, CacheKey, Lookup};
use crate::wire::{pong_packet, Handshake, PacketReader};

/// Status Request and Ping bodies are tiny; anything bigger is not a status client.
const MAX_STATUS_FRAME: usize = 64;

pub(super) async fn answer(
    edge: &Edge,
    mut pre: Preroute,
    snap: &Snapshot,
    handshake: &Handshake,
    host: &str,
    target: &Resolved,
    client: SocketAddr,
) {
    let s = &snap.settings;
    if !edge.limits.allow_status(client.ip(), &s.limits) {
        return edge.metrics.reject(Reject::StatusRate);
    }
    match pre.frame(MAX_STATUS_FRAME).await {
        Ok(body) if body.as_ref() == [0x00] => {}
        _ => {
            edge.metrics.handshake_error("bad_status_request");
            return;
        }
    }
    let frame = status_frame(edge, snap, handshake, host, target).await;
    let write_by = Instant::now() + s.handshake_timeout;
    if !matches!(
        timeout_at(write_by, pre.client.write_all(&frame)).await,
        Ok(Ok(()))
    ) {
        return;
    }
    // The client measures latency with a ping; it may also just hang up.
    pre.extend_deadline(write_by);
    if let Ok(body) = pre.frame(MAX_STATUS_FRAME).await {
        let mut r = PacketReader::new(&body);
        if let (Ok(0x01), Ok(payload)) = (r.varint(), r.i64()) {
            let _ = timeout_at(write_by, pre.client.write_all(&pong_packet(payload))).await;
        }
    }
}

/// The Status Response for this client: the backend's (cached) or a stand-in.
async fn status_frame(
    edge: &Edge,
    snap: &Snapshot,
    hs: &Handshake,
    host: &str,
    target: &Resolved,
) -> Bytes {
    let server = &target.server;
    let state = edge.lifecycle.state(server);
    if state != ServerState::Active {
        edge.metrics.status_cache("standin");
        return standin_frame(
            &server.status,
            Standin::State(state),
            edge.lifecycle.eta(server),
            hs.protocol,
        );
    }
    match cached_status(edge, snap, host, target, hs.protocol, hs.port).await {
        Some(status) => status.frame.clone(),
        None => standin_frame(&server.status, Standin::Offline, None, hs.protocol),
    }
}

/// The backend's status through the cache, or None when it can't be had.
pub(super) async fn cached_status(
    edge: &Edge,
    snap: &Snapshot,
    host: &str,
    target: &Resolved,
    protocol: i32,
    port: u16,
) -> Option<std::sync::Arc<BackendStatus>> {
    let s = &snap.settings;
    let server = target.server.clone();
    let backend = target.backend.clone();
    let key = CacheKey {
        host: host.into(),
        backend: backend.clone(),
        protocol,
    };
    let address = server
        .rewrite_host
        .clone()
        .unwrap_or_else(|| host.to_string());
    let limit = s.status_fetch_timeout;
    let fetch = move || async move {
        let q = StatusQuery {
            backend: &backend,
            address: &address,
            port,
            protocol,
            proxy_protocol: server.proxy_protocol,
        };
        fetch_status(q, limit).await
    };
    match edge
        .status
        .get(key, s.status_ttl, s.status_stale_for, fetch)
        .await
    {
        Lookup::Hit(v) => {
            edge.metrics.status_cache("hit");
            Some(v)
        }
        Lookup::Fetched(v) => {
            edge.metrics.status_cache("miss");
            Some(v)
        }
        Lookup::Stale(v) => {
            edge.metrics.status_cache("stale");
            Some(v)
        }
        Lookup::Failed(e) => {
            edge.metrics.status_cache("error");
            edge.metrics.backend_error("status");
            tracing::debug!(
                error = %crate::wire::log_safe(&e),
                backend = %crate::wire::log_safe(&target.backend),
                "status fetch failed"
            );
            None
        }
    }
}
