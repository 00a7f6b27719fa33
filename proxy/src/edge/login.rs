//! A player joining: read Login Start, check a returning player's ticket, ask the control
//! plane for admission, then forward, refuse or hold.

use std::net::SocketAddr;

use bytes::BytesMut;
use tracing::debug;

use super::closed::{Closed, Ending};
use super::forward::{forward, Join};
use super::goodbye::Goodbye;
use super::preroute::Preroute;
use super::Edge;
use crate::admission::{Admission, HeldConnection, Player, ServerState};
use crate::metrics::{Malformed, Reject};
use crate::route::Resolved;
use crate::settings::Snapshot;
use crate::shed::Slot;
use crate::wire::{framed, log_safe, version, Handshake, Intent, LoginStart};

use super::returning;

pub(super) async fn admit(
    edge: &Edge,
    mut pre: Preroute,
    snap: &Snapshot,
    handshake: Handshake,
    target: Resolved,
    client: SocketAddr,
    slot: &Slot,
) -> Ending {
    let s = &snap.settings;
    if !edge.limits.allow_login(client.ip(), &s.limits) {
        return Closed::Rejected(Reject::LoginRate).saying(pre.client, Goodbye::RateLimited);
    }
    let body = match pre.frame(s.max_login_start_bytes).await {
        Ok(b) => b,
        Err(e) => return Closed::Malformed(Malformed::Kind(e.kind()), None).into(),
    };
    let login = match LoginStart::parse(&body, handshake.protocol) {
        Ok(l) => l,
        Err(e) => {
            return Closed::Malformed(Malformed::Kind(e.kind()), Some(Reject::BadHandshake)).into()
        }
    };
    let player = Player {
        name: login.name,
        uuid: login.uuid,
        addr: client,
        protocol: handshake.protocol,
    };
    debug!(player = %log_safe(&player.name), server = %target.server.id, "login");
    let login_frame = framed(&body);
    // `body` is a view of the read buffer; nothing must keep that buffer alive for the
    // session's lifetime (memory per idle session).
    drop(body);
    // A player the anteroom transferred here comes back with a ticket: straight to the
    // backend, never into the anteroom again. No or a bad ticket is an ordinary join.
    let returning = match (handshake.intent, edge.ticket_key.get()) {
        (Intent::Transfer, Some(key)) if version::has_transfer(handshake.protocol) => {
            match returning::check(&mut pre, key, &target.server.id, client.ip()).await {
                Ok(r) => r,
                Err(()) => return Closed::Rejected(Reject::BadHandshake).into(),
            }
        }
        _ => false,
    };
    // From here on this is a player on the way to a server: never shed.
    if !slot.routed() {
        return Closed::Unrouted.into();
    }
    // A ticket skips the anteroom only while the server is up; if it went down again
    // since the transfer, this is a join like any other.
    let admission = if returning && edge.lifecycle.state(&target.server) == ServerState::Active {
        Admission::Forward
    } else {
        edge.lifecycle.admit(&target.server, &player).await
    };
    match admission {
        Admission::Forward => {
            let join = Join {
                handshake,
                login_frame,
                rest: pre.take_rest(),
                player,
            };
            forward(edge, pre.into_client(), &target, join, s).await
        }
        Admission::Refuse(reason) => Closed::Refused.saying(pre.client, Goodbye::Refused(reason)),
        Admission::Hold(holder) => {
            let mut received = BytesMut::new();
            received.extend_from_slice(&handshake.encode());
            received.extend_from_slice(&login_frame);
            received.extend_from_slice(&pre.take_rest());
            let conn = HeldConnection {
                client: pre.into_client(),
                server: target.server,
                backend: target.backend,
                player,
                handshake,
                received: received.freeze(),
            };
            holder.hold(conn).await;
            Closed::Held.into()
        }
    }
}
