//! Connecting a player to their backend and replaying what they already sent.
//!
//! The backend must see exactly the conversation a direct client would have started:
//! the handshake (with the host rewritten if configured, and intent 3 turned into 2 for
//! servers that don't accept transfers), then Login Start, then any bytes that followed.
//! A PROXY v2 header goes first when the server wants the player's real address. If the
//! backend refuses or dies before answering, the player — still in the login state — gets
//! a Disconnect that says so, instead of a dropped socket.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::debug;

use super::closed::{Closed, Ending, Session};
use super::goodbye::Goodbye;
use super::Edge;
use crate::admission::Player;
use crate::metrics::BackendError;
use crate::relay::{relay, Ended};
use crate::route::{Resolved, Server};
use crate::sessions::{NewSession, SessionGuard};
use crate::settings::EdgeSettings;
use crate::wire::{log_safe, normalize_host, proxy_protocol, Handshake, Intent};

/// What a joining client has sent so far.
pub struct Join {
    pub handshake: Handshake,
    /// The Login Start frame, length prefix included.
    pub login_frame: Bytes,
    /// Bytes the client sent after Login Start.
    pub rest: Bytes,
    pub player: Player,
}

impl Join {
    /// The player's name; everything else is dropped.
    fn into_name(self) -> String {
        self.player.name
    }
}

/// Connects the backend, replays the join and relays until the session ends.
pub(super) async fn forward(
    edge: &Edge,
    client: TcpStream,
    target: &Resolved,
    join: Join,
    s: &EdgeSettings,
) -> Ending {
    // On another node that offers a link: over the warm link, unless it cannot be used.
    if let (Some(dialer), Some((node, addr))) =
        (edge.link.get(), edge.lifecycle.link(&target.server))
    {
        if let Some(link) = super::linked::open(dialer, &node, &addr).await {
            // Boxed: the link's path is the larger future, and every TCP session would
            // otherwise carry its size (memory per idle session).
            return Box::pin(super::linked::forward(edge, client, target, join, s, link)).await;
        }
    }
    let server = &target.server;
    let started = Instant::now();
    let backend = match timeout(s.connect_timeout, TcpStream::connect(&*target.backend)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            debug!(backend = %log_safe(&target.backend), error = %e, "backend connect failed");
            return Closed::Backend(BackendError::Connect)
                .saying(client, Goodbye::Unreachable(server.id.clone()));
        }
        Err(_) => {
            return Closed::Backend(BackendError::ConnectTimeout)
                .saying(client, Goodbye::NoAnswer(server.id.clone()))
        }
    };
    edge.metrics
        .backend_connect
        .observe(started.elapsed().as_secs_f64());
    let _ = backend.set_nodelay(true);
    // Registered before the first byte goes out: if this connection comes back to the
    // edge (a routing loop), the edge recognises it (see crate::loopguard).
    // The backend's address as configured when it is a literal one (no getpeername).
    let remote = target
        .backend
        .parse::<std::net::SocketAddr>()
        .or_else(|_| backend.peer_addr());
    let _loop_mark = match (backend.local_addr(), remote) {
        (Ok(local), Ok(remote)) => Some(edge.loops.outgoing.mark(local, remote)),
        _ => None,
    };

    let preamble = preamble(server, &client, &backend, &join);
    let mut backend = backend;
    if !matches!(
        timeout(s.connect_timeout, backend.write_all(&preamble)).await,
        Ok(Ok(()))
    ) {
        return Closed::Backend(BackendError::ClosedBeforeLogin)
            .saying(client, Goodbye::ClosedBeforeLogin(server.id.clone()));
    }

    drop(preamble);
    let _session = open_session(edge, server, &join);
    // From here on only the player's name is needed: the join's buffers go now, not when
    // the session ends hours later.
    let player = join.into_name();
    let (ended, moved) = relay(
        &client,
        &backend,
        s.idle_timeout,
        edge.metrics.byte_counters(),
    )
    .await;
    // The player, still in the login state, hears why instead of a dropped socket.
    let silent = matches!(ended, Ok(Ended::BackendSilent));
    let closed = Closed::Session(Session {
        player,
        server: server.id.clone(),
        started,
        ended,
        moved,
    });
    if silent {
        closed.saying(client, Goodbye::ClosedBeforeLogin(server.id.clone()))
    } else {
        closed.into()
    }
}

/// Counts the player as on `server` (until the guard drops): the control plane's live
/// player count, whichever way the bytes go.
pub(super) fn open_session(edge: &Edge, server: &Server, join: &Join) -> SessionGuard {
    edge.sessions.open(
        server.id.clone(),
        NewSession {
            player: join.player.name.clone(),
            uuid: join.player.uuid,
            protocol: join.player.protocol,
            joined_via: (
                normalize_host(&join.handshake.address).unwrap_or_default(),
                join.handshake.port,
            ),
        },
    )
}

/// PROXY header (optional) + handshake + Login Start + read-ahead, in one write.
fn preamble(server: &Server, client: &TcpStream, backend: &TcpStream, join: &Join) -> Bytes {
    let mut out = BytesMut::with_capacity(256 + join.rest.len());
    if server.proxy_protocol {
        if let (Ok(player), Ok(dst)) = (client.peer_addr(), backend.peer_addr()) {
            let real = if player == join.player.addr {
                player
            } else {
                join.player.addr
            };
            out.extend_from_slice(&proxy_protocol::encode_v2(real, dst));
        }
    }
    out.extend_from_slice(&backend_handshake(server, &join.handshake).encode());
    out.extend_from_slice(&join.login_frame);
    out.extend_from_slice(&join.rest);
    out.freeze()
}

/// The handshake as the backend should see it.
pub fn backend_handshake(server: &Server, original: &Handshake) -> Handshake {
    let mut hs = original.clone();
    if let Some(host) = &server.rewrite_host {
        // Keep Forge markers and RealIP suffixes: modded servers read them.
        let cut = hs
            .address
            .find(['\0'])
            .or_else(|| hs.address.find("///"))
            .unwrap_or(hs.address.len());
        hs.address = format!("{host}{}", &hs.address[cut..]);
    }
    if hs.intent == Intent::Transfer && !server.accepts_transfers {
        hs.intent = Intent::Login;
    }
    hs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_host_and_intent() {
        let mut server = Server::new("s", "127.0.0.1:1");
        let hs = Handshake {
            protocol: 767,
            address: "Play.Example.com\0FML3\0".into(),
            port: 25565,
            intent: Intent::Transfer,
        };
        assert_eq!(backend_handshake(&server, &hs).intent, Intent::Login);
        server.accepts_transfers = true;
        server.rewrite_host = Some("internal.local".into());
        let out = backend_handshake(&server, &hs);
        assert_eq!(out.intent, Intent::Transfer);
        assert_eq!(out.address, "internal.local\0FML3\0");
    }
}
