//! The link between edges and game nodes: one warm QUIC connection (quinn) from each edge
//! to each node it routes to, mutual TLS with certificates from the fleet's own CA, and
//! one bidirectional stream per player.
//!
//! Follow one player: the edge's [`dial::Dialer`] opens a stream on the warm connection
//! and writes the [`warden_wire::link::Open`] frame (server, the player's real address,
//! the join bytes it already read); the node's [`listen::Listener`] accepted that
//! connection (its client certificate checked against the CA and the revocation list),
//! reads the frame within bounds and hands the stream to whoever lands players (the
//! proxy), which connects the backend and answers with a [`warden_wire::link::Reply`];
//! [`pipe`] then carries the bytes both ways. Beside the players' streams, each link has
//! one [`control`] stream: the node pushes its servers' state and status, the edge asks
//! for wakes and sleeps. [`pki`] makes the CA and the certificates
//! (`warden ca init`, `warden cert issue`, `warden cert revoke`), [`tls`] turns them into
//! rustls and quinn configs, and [`metrics`] counts what happens on each link.

pub mod control;
pub mod dial;
pub mod listen;
pub mod metrics;
pub mod pipe;
pub mod pki;
pub mod tls;

use std::time::Duration;

use thiserror::Error;

/// The protocol name in ALPN: an appliance speaking another version of the link is
/// refused in the handshake, with a reason, instead of misreading frames.
pub const ALPN: &[u8] = b"warden-link/1";

/// How long a stream's first frame may take to arrive.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum LinkError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("certificate material: {0}")]
    Pki(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("link to {node} at {addr}: {why}")]
    Connect {
        node: String,
        addr: String,
        why: String,
    },
    #[error("link to {node} is backing off after failures; next try in {wait:?}")]
    BackingOff { node: String, wait: Duration },
    #[error("stream: {0}")]
    Stream(String),
    #[error(transparent)]
    Frame(#[from] warden_wire::link::LinkFrameError),
}

impl LinkError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LinkError::Io {
            what: what.into(),
            source,
        }
    }
}
