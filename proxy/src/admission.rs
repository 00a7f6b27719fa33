//! Admission: the seam between the data plane and the control plane (the lifecycle engine).
//!
//! The proxy never starts containers or counts GB-hours itself; it asks a [`Lifecycle`]
//! what state a server is in (for the server-list MOTD) and whether a joining player may
//! be forwarded now. The control plane implements it: waking sleeping servers, holding the
//! player while one starts, or taking the connection into the anteroom. Until then,
//! [`AlwaysActive`] routes straight to the backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::net::TcpStream;

use crate::route::Server;
use crate::wire::Handshake;

/// Where a server is in its life, as far as a player can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Active,
    Starting,
    Stopping,
    Sleeping,
    Archiving,
    Archived,
    Restoring,
    Swapping,
    Failed,
}

impl ServerState {
    /// Its name on the link's control stream.
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Active => "active",
            ServerState::Starting => "starting",
            ServerState::Stopping => "stopping",
            ServerState::Sleeping => "sleeping",
            ServerState::Archiving => "archiving",
            ServerState::Archived => "archived",
            ServerState::Restoring => "restoring",
            ServerState::Swapping => "swapping",
            ServerState::Failed => "failed",
        }
    }

    /// The state of that name (None: a name this version does not know).
    pub fn from_name(name: &str) -> Option<ServerState> {
        use ServerState::*;
        [Active, Starting, Stopping, Sleeping, Archiving]
            .into_iter()
            .chain([Archived, Restoring, Swapping, Failed])
            .find(|s| s.name() == name)
    }
}

/// Who is joining.
#[derive(Debug, Clone)]
pub struct Player {
    pub name: String,
    pub uuid: Option<u128>,
    /// The real client address (after a trusted PROXY header).
    pub addr: SocketAddr,
    pub protocol: i32,
}

/// A login the control plane has taken over (the anteroom): the client socket plus the
/// bytes already read from it, so the login can be replayed or answered.
pub struct HeldConnection {
    pub client: TcpStream,
    pub server: Arc<Server>,
    pub backend: Arc<str>,
    pub player: Player,
    /// The handshake, parsed (the address the player used, their protocol and intent).
    pub handshake: Handshake,
    /// Handshake, Login Start and anything after them, exactly as the client sent them.
    pub received: Bytes,
}

/// Takes over connections the proxy cannot forward yet.
#[async_trait]
pub trait Hold: Send + Sync {
    async fn hold(&self, conn: HeldConnection);
}

/// What to do with a player who wants to join.
pub enum Admission {
    /// The backend is ready: connect and relay.
    Forward,
    /// Tell the player why not (login Disconnect) and close.
    Refuse(String),
    /// Hand the connection to someone who will keep the player waiting.
    Hold(Arc<dyn Hold>),
}

#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// The state shown in status pings. Must be cheap and must never wake anything.
    fn state(&self, server: &Server) -> ServerState;

    /// Expected wait until the server is ready, from recent start/restore durations.
    fn eta(&self, server: &Server) -> Option<Duration>;

    /// Called for every login (intent 2 or 3). May wake the server and wait for it (the
    /// hold); the caller bounds nothing here, so implementations bound their own waits.
    async fn admit(&self, server: &Arc<Server>, player: &Player) -> Admission;

    /// Where the server runs now, when that is not the route's backend (it was moved to
    /// another node). Must be cheap: asked on every status ping and login.
    fn backend(&self, _server: &Server) -> Option<Arc<str>> {
        None
    }

    /// When the server runs on another node that accepts QUIC links: that node's id and
    /// link address (`host:port`). Must be cheap: asked on every login.
    fn link(&self, _server: &Server) -> Option<(Arc<str>, Arc<str>)> {
        None
    }
}

/// Every server is always up: pure routing, no lifecycle.
pub struct AlwaysActive;

#[async_trait]
impl Lifecycle for AlwaysActive {
    fn state(&self, _server: &Server) -> ServerState {
        ServerState::Active
    }

    fn eta(&self, _server: &Server) -> Option<Duration> {
        None
    }

    async fn admit(&self, _server: &Arc<Server>, _player: &Player) -> Admission {
        Admission::Forward
    }
}
