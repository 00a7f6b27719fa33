//! Answering pre-1.7 (`0xFE`) pings from the status cache, before the connection's
//! pre-routing deadline like every exchange before routing.

use std::net::SocketAddr;

use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout_at;

use super::closed::{Answered, Closed};
use super::preroute::Preroute;
use super::Edge;
use crate::admission::ServerState;
use crate::metrics::Reject;
use crate::settings::Snapshot;
use crate::status::render::{motd, Standin};
use crate::wire::legacy::{response, LegacyPing, LegacyStatus};
use crate::wire::{normalize_host, version};

/// Legacy clients can't name a modern protocol; Warden asks the backend as a 1.8 client,
/// which every modern server (natively or through ViaVersion) answers.
const PROBE_PROTOCOL: i32 = version::V1_8;

pub(super) async fn answer(
    edge: &Edge,
    mut pre: Preroute,
    snap: &Snapshot,
    ping: LegacyPing,
    client: SocketAddr,
    answered: &Mutex<Option<Answered>>,
) -> Closed {
    if !edge.limits.allow_status(client.ip(), &snap.settings.limits) {
        return Closed::Rejected(Reject::StatusRate);
    }
    // Only 1.6 says which host it wants; older pings take the default route.
    let (host, port) = match &ping {
        LegacyPing::V1_6 { host, port, .. } => {
            (normalize_host(host).unwrap_or_default(), *port as u16)
        }
        _ => (String::new(), 25565),
    };
    let Some(target) = snap.table.lookup(&host) else {
        return Closed::Rejected(Reject::UnknownHost);
    };
    *answered.lock() = Some(Answered::Legacy(None));
    let server = &target.server;
    let state = edge.lifecycle.state(server);
    let deadline = pre.deadline();
    let cached = if state == ServerState::Active {
        let lookup = super::status::cached_status(edge, snap, &host, &target, PROBE_PROTOCOL, port);
        match timeout_at(deadline, lookup).await {
            Ok((cached, from)) => {
                *answered.lock() = Some(Answered::Legacy(Some(from)));
                cached
            }
            Err(_) => return Closed::LegacyTimedOut,
        }
    } else {
        None
    };
    let reply = match &cached {
        Some(st) => response(
            &ping,
            &LegacyStatus {
                protocol: version::LEGACY_REPLY,
                version: &st.doc.version_name,
                motd: &st.doc.motd_text,
                online: st.doc.online,
                max: st.doc.max,
            },
        ),
        None => {
            let why = if state == ServerState::Active {
                Standin::Offline
            } else {
                Standin::State(state)
            };
            let text = motd(&server.status, why, edge.lifecycle.eta(server));
            response(
                &ping,
                &LegacyStatus {
                    protocol: version::LEGACY_REPLY,
                    version: &server.status.version_name,
                    motd: &text,
                    online: 0,
                    max: 0,
                },
            )
        }
    };
    let _ = timeout_at(deadline, pre.client.write_all(&reply)).await;
    Closed::Answered(answered.lock().unwrap_or(Answered::Legacy(None)))
}
