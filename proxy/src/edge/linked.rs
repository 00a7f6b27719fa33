//! A join carried to another node over the warm QUIC link instead of a new TCP connection:
//! one stream per player, opened without a round trip, whose first frame tells the node
//! the server, the player's real address and the join bytes (handshake as the backend
//! should see it, Login Start, read-ahead). The node answers whether it reached the
//! backend; a refusal becomes the player's Disconnect, never a silent drop. A link that
//! cannot be used right now sends the player over TCP instead (counted).

use std::time::Instant;

use bytes::BytesMut;
use quinn::{RecvStream, SendStream};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::debug;
use warden_link::dial::Dialer;
use warden_link::pipe::{pipe, Ended as PipeEnded};
use warden_wire::link::{Open, Reply, ReplyCode};

use super::closed::{Closed, Ending, Session};
use super::forward::{backend_handshake, open_session, Join};
use super::goodbye::Goodbye;
use super::Edge;
use crate::metrics::BackendError;
use crate::relay::{Ended, Moved};
use crate::route::Resolved;
use crate::settings::EdgeSettings;

/// A player's stream on the link to `node`.
pub(super) struct Linked<'a> {
    dialer: &'a Dialer,
    node: &'a str,
    send: SendStream,
    recv: RecvStream,
}

/// A stream to `node`, or None when its link cannot be used now (the caller goes over
/// TCP; the fallback is counted).
pub(super) async fn open<'a>(
    dialer: &'a std::sync::Arc<Dialer>,
    node: &'a str,
    addr: &str,
) -> Option<Linked<'a>> {
    match dialer.open(node, addr).await {
        Ok((send, recv)) => Some(Linked {
            dialer,
            node,
            send,
            recv,
        }),
        Err(e) => {
            debug!(node, error = %e, "link not usable; this player goes over TCP");
            dialer.metrics().fallbacks.with_label_values(&[node]).inc();
            None
        }
    }
}

/// Sends the join over the stream, waits for the node's answer, then carries the session.
pub(super) async fn forward(
    edge: &Edge,
    mut client: TcpStream,
    target: &Resolved,
    join: Join,
    s: &EdgeSettings,
    link: Linked<'_>,
) -> Ending {
    let Linked {
        dialer,
        node,
        mut send,
        mut recv,
    } = link;
    let server = &target.server;
    let started = Instant::now();
    let mut bytes = BytesMut::with_capacity(256 + join.rest.len());
    bytes.extend_from_slice(&backend_handshake(server, &join.handshake).encode());
    bytes.extend_from_slice(&join.login_frame);
    bytes.extend_from_slice(&join.rest);
    let open = Open {
        server: server.id.to_string(),
        player: join.player.addr,
        join: bytes.freeze(),
    };
    let Ok(frame) = open.encode() else {
        return Closed::Backend(BackendError::Connect)
            .saying(client, Goodbye::Unreachable(server.id.clone()));
    };
    if !matches!(
        timeout(s.connect_timeout, send.write_all(&frame)).await,
        Ok(Ok(()))
    ) {
        return Closed::Backend(BackendError::ClosedBeforeLogin)
            .saying(client, Goodbye::Unreachable(server.id.clone()));
    }
    match timeout(s.connect_timeout, reply(&mut recv)).await {
        Ok(Ok(r)) if r.code == ReplyCode::Connected => {}
        Ok(Ok(r)) => {
            debug!(node, server = %server.id, code = ?r.code, reason = %r.reason, "the node could not serve the player");
            let goodbye = match r.code {
                ReplyCode::Unreachable => Goodbye::Unreachable(server.id.clone()),
                _ => Goodbye::Refused(format!(
                    "{} is moving to another machine. Please try again in a moment.",
                    server.id
                )),
            };
            return Closed::Backend(BackendError::Connect).saying(client, goodbye);
        }
        Ok(Err(e)) => {
            debug!(node, error = %e, "the link stream failed before the node answered");
            return Closed::Backend(BackendError::Connect)
                .saying(client, Goodbye::Unreachable(server.id.clone()));
        }
        Err(_) => {
            return Closed::Backend(BackendError::ConnectTimeout)
                .saying(client, Goodbye::NoAnswer(server.id.clone()))
        }
    }
    edge.metrics
        .backend_connect
        .observe(started.elapsed().as_secs_f64());
    let _session = open_session(edge, server, &join);
    let m = dialer.metrics();
    let streams = m.streams.with_label_values(&[node]);
    streams.inc();
    let (up, down) = edge.metrics.byte_counters();
    let (to_node, from_node) = (
        m.bytes.with_label_values(&[node, "to_node"]),
        m.bytes.with_label_values(&[node, "from_node"]),
    );
    let (ended, moved) = pipe(
        &mut client,
        send,
        recv,
        s.idle_timeout,
        &to_node,
        &from_node,
    )
    .await;
    streams.dec();
    up.inc_by(moved.tcp_to_link);
    down.inc_by(moved.link_to_tcp);
    let silent = ended == PipeEnded::Silent;
    let closed = Closed::Session(Session {
        player: join.player.name,
        server: server.id.clone(),
        started,
        ended: match ended {
            PipeEnded::Closed => Ok(Ended::Closed),
            PipeEnded::Silent => Ok(Ended::BackendSilent),
            PipeEnded::Idle => Ok(Ended::IdleTimeout),
            PipeEnded::TcpFailed(e) | PipeEnded::LinkFailed(e) => Err(std::io::Error::other(e)),
        },
        moved: Moved {
            client_to_backend: moved.tcp_to_link,
            backend_to_client: moved.link_to_tcp,
        },
    });
    if silent {
        closed.saying(client, Goodbye::ClosedBeforeLogin(server.id.clone()))
    } else {
        closed.into()
    }
}

/// The node's answer: code, then the reason.
async fn reply(recv: &mut RecvStream) -> Result<Reply, String> {
    let mut head = [0u8; 3];
    recv.read_exact(&mut head)
        .await
        .map_err(|e| e.to_string())?;
    let (code, len) = Reply::head(head).map_err(|e| e.to_string())?;
    let mut reason = vec![0u8; len];
    recv.read_exact(&mut reason)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Reply {
        code,
        reason: String::from_utf8_lossy(&reason).into_owned(),
    })
}
