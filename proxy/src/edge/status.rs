//! Answering a server-list ping at the edge.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout_at;

use super::closed::{Answered, Closed, StatusFrom};
use super::preroute::{Preroute, PrerouteError};
use super::Edge;
use crate::admission::ServerState;
use crate::metrics::{BackendError, CacheResult, Malformed, Reject};
use crate::route::{Resolved, Server};
use crate::settings::Snapshot;
use crate::status::fetch::StatusQuery;
use crate::status::render::{standin_frame, Standin};
use crate::status::{fetch_status, BackendStatus, CacheKey, FetchError, Lookup, Policy};
use crate::wire::{pong_packet, Handshake, PacketReader};

/// Status Request and Ping bodies are tiny; anything bigger is not a status client.
const MAX_STATUS_FRAME: usize = 64;

/// Reads the Status Request, answers it and echoes the Ping, all before the connection's
/// pre-routing deadline: a client that stalls, or a backend that does, never holds the
/// connection past it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn answer(
    edge: &Edge,
    mut pre: Preroute,
    snap: &Snapshot,
    handshake: &Handshake,
    host: &str,
    target: &Resolved,
    client: SocketAddr,
    answered: &Mutex<Option<Answered>>,
) -> Closed {
    let s = &snap.settings;
    if !edge.limits.allow_status(client.ip(), &s.limits) {
        return Closed::Rejected(Reject::StatusRate);
    }
    match pre.frame(MAX_STATUS_FRAME).await {
        Ok(body) if body.as_ref() == [0x00] => {}
        Err(PrerouteError::Timeout) => return Closed::Rejected(Reject::Timeout),
        _ => return Closed::Malformed(Malformed::BadStatusRequest, None),
    }
    let deadline = pre.deadline();
    let Ok((frame, from)) =
        timeout_at(deadline, status_frame(edge, snap, handshake, host, target)).await
    else {
        return Closed::Rejected(Reject::Timeout);
    };
    *answered.lock() = Some(Answered::Status(from));
    if !matches!(
        timeout_at(deadline, pre.client.write_all(&frame)).await,
        Ok(Ok(()))
    ) {
        return Closed::Answered(Answered::Status(from));
    }
    // The client measures latency with a ping; it may also just hang up.
    if let Ok(body) = pre.frame(MAX_STATUS_FRAME).await {
        let mut r = PacketReader::new(&body);
        if let (Ok(0x01), Ok(payload)) = (r.varint(), r.i64()) {
            let _ = timeout_at(deadline, pre.client.write_all(&pong_packet(payload))).await;
        }
    }
    Closed::Answered(Answered::Status(from))
}

/// The Status Response for this client: the backend's (cached) or a stand-in.
async fn status_frame(
    edge: &Edge,
    snap: &Snapshot,
    hs: &Handshake,
    host: &str,
    target: &Resolved,
) -> (Bytes, StatusFrom) {
    let server = &target.server;
    if let Some(frame) = told_frame(edge, server, hs.protocol) {
        return (frame, StatusFrom::Link);
    }
    let state = edge.lifecycle.state(server);
    if state != ServerState::Active {
        let frame = standin_frame(
            &server.status,
            Standin::State(state),
            edge.lifecycle.eta(server),
            hs.protocol,
        );
        return (frame, StatusFrom::Standin);
    }
    let (cached, from) = cached_status(edge, snap, host, target, hs.protocol, hs.port).await;
    let frame = match cached {
        Some(status) => status.frame_for(hs.protocol),
        None => standin_frame(&server.status, Standin::Offline, None, hs.protocol),
    };
    (frame, from)
}

/// The answer from what the server's node said on the link's control stream, when there
/// is one: its stand-in while the server is not up, the server's own status while it is.
/// Nothing crosses the link. None: ask the usual way (no control stream, or the node had
/// no status of the server).
fn told_frame(edge: &Edge, server: &Server, protocol: i32) -> Option<Bytes> {
    let told = edge.told(server)?;
    let state = ServerState::from_name(&told.state)?;
    if state != ServerState::Active {
        let eta = edge.lifecycle.eta(server);
        return Some(standin_frame(
            &server.status,
            Standin::State(state),
            eta,
            protocol,
        ));
    }
    told.status.as_ref().map(|doc| doc.frame())
}

impl Edge {
    /// How this node shows `id` on the links' control streams: its state and, while it is
    /// up, its status through the status cache (so the server is asked at most once per
    /// `status_ttl`, however many edges listen). None: no such route.
    pub async fn shown(&self, id: &str) -> Option<warden_link::control::Shown> {
        let snap = self.snapshot();
        let server = snap.table.server(id)?.clone();
        let state = self.lifecycle.state(&server);
        let mut status = Bytes::new();
        if state == ServerState::Active {
            let host = snap
                .table
                .hosts()
                .iter()
                .find(|(_, s)| Arc::ptr_eq(s, &server))
                .map_or_else(|| id.to_string(), |(h, _)| h.clone());
            let target = Resolved {
                backend: Arc::from(server.backend.as_str()),
                server,
            };
            let (cached, _) =
                cached_status(self, &snap, &host, &target, LINK_STATUS_PROTOCOL, 25565).await;
            if let Some(s) = cached {
                status = s.doc.frame();
            }
        }
        Some(warden_link::control::Shown {
            state: state.name().to_string(),
            status,
        })
    }
}

/// The protocol a node asks its servers' status with for the links (a multi-version server
/// answers it as that version).
const LINK_STATUS_PROTOCOL: i32 = crate::wire::version::V1_21_6;

/// The backend's status through the cache, or None when it can't be had; and how the cache
/// answered.
pub(super) async fn cached_status(
    edge: &Edge,
    snap: &Snapshot,
    host: &str,
    target: &Resolved,
    protocol: i32,
    port: u16,
) -> (Option<std::sync::Arc<BackendStatus>>, StatusFrom) {
    let s = &snap.settings;
    let server = target.server.clone();
    let backend = target.backend.clone();
    let key = CacheKey {
        host: host.into(),
        backend: backend.clone(),
    };
    let limit = s.status_fetch_timeout;
    let max_bytes = s.status_max_response_bytes;
    // Called only on a miss: a cached answer costs no allocation here.
    let fetch = move || {
        let address = server
            .rewrite_host
            .clone()
            .unwrap_or_else(|| host.to_string());
        async move {
            let q = StatusQuery {
                backend: &backend,
                address: &address,
                port,
                protocol,
                proxy_protocol: server.proxy_protocol,
            };
            fetch_status(q, limit, max_bytes).await
        }
    };
    let policy = Policy {
        ttl: s.status_ttl,
        stale_for: s.status_stale_for,
        error_ttl: s.status_error_ttl,
        max_bytes: s.status_cache_max_bytes,
    };
    let lookup = edge.status.get(key, policy, fetch).await;
    let (entries, bytes) = edge.status.usage();
    let from = |result, error| StatusFrom::Cache {
        result,
        error,
        entries,
        bytes,
    };
    match lookup {
        Lookup::Hit(v) => (Some(v), from(CacheResult::Hit, None)),
        Lookup::Fetched(v) => (Some(v), from(CacheResult::Miss, None)),
        Lookup::Stale(v) => (Some(v), from(CacheResult::Stale, None)),
        Lookup::Failed(e) => {
            let kind = match e {
                FetchError::TooLarge { .. } => BackendError::StatusTooLarge,
                _ => BackendError::Status,
            };
            tracing::debug!(
                error = %crate::wire::log_safe(&e),
                backend = %crate::wire::log_safe(&target.backend),
                "status fetch failed"
            );
            (None, from(CacheResult::Error, Some(kind)))
        }
        Lookup::KnownFailure(_) => (None, from(CacheResult::ErrorCached, None)),
    }
}
