//! The anteroom: holds waiting players in the configuration phase and hands them over with
//! Transfer (issue 4).
//!
//! A player joins a server that is not ready. The proxy has read the handshake and Login
//! Start and gives the connection here (a [`Guest`]) together with where the player should
//! end up (a [`Destination`]) and a watch channel of the server's progress ([`WaitStatus`]).
//! [`Anteroom::hold`] logs the player in offline, keeps them in configuration with
//! keep-alives (showing a dialog on 1.21.6+), and once the server is ready stores a signed
//! ticket cookie and sends Transfer back to the public host. The client reconnects with
//! intent 3 and the cookie, and the proxy routes it to the now-running backend.
//!
//! Only 1.20.5+ clients (protocol 766+, see [`supports`]) know Transfer and cookies.
//!
//! # Memory per held guest
//! Nothing is spawned and nothing large is kept per guest. Measured and estimated, for an idle
//! guest in configuration:
//! - the hold future: about 1.2 KiB (measured in a debug build by `tests/hold.rs`
//!   `hold_future_is_small`, which fails above 2 KiB); it holds the socket, the status
//!   receiver, the destination strings, two timers and the keep-alive bookkeeping;
//! - the read buffer: empty while idle; at most one frame (≤ `max_packet`) while a packet
//!   arrives, and released if it grew past 1 KiB;
//! - tokio's task header and socket registration: a few hundred bytes; the tracing span, if a
//!   subscriber records it: a few hundred more;
//! - the kernel's TCP socket: a few KiB, outside this process's heap.
//!
//! So roughly 2 KiB of user space per guest, about 20 MiB for 10,000 held players, with the
//! sockets themselves on top. A one-off probe (3,000 guests idle in configuration, debug
//! build, no tracing subscriber) grew the process RSS by 1.8 KiB per guest.
//!
//! Modules: `hold` (one guest's stay: offline login, the configuration hold, the way
//! out), `conn` (the guest's socket, every read and write bounded), `offline` (offline-mode
//! UUIDs), `text` (what the player reads) and `settings` (the knobs). The packets themselves
//! are `warden-wire`'s.

mod conn;
mod hold;
mod offline;
mod settings;
mod text;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

pub use offline::offline_uuid;
pub use settings::AnteroomSettings;

/// Whether a client speaking `protocol` can be held here (1.20.5+).
pub fn supports(protocol: i32) -> bool {
    warden_wire::version::has_transfer(protocol)
}

/// Why the player is waiting; shown to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    Waking,
    Restoring,
    /// Its node went down; the world comes back from the newest backup on another one.
    Recovering,
    Restarting,
    /// No machine has room for the server yet.
    Capacity,
}

/// The server's progress, as the control plane reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitStatus {
    Waiting {
        why: Waiting,
        eta: Option<Duration>,
    },
    /// Transfer the player now.
    Ready,
    /// Give up; the reason is shown to the player.
    Failed(String),
}

/// A client whose handshake (intent 2 or 3) and Login Start the proxy has already read.
pub struct Guest {
    pub client: TcpStream,
    /// Handshake + Login Start (+ anything after), exactly as the client sent them.
    pub received: Bytes,
    pub protocol: i32,
    pub name: String,
    pub uuid: Option<u128>,
    /// The real client address (after a trusted PROXY header); the ticket is bound to it.
    pub addr: SocketAddr,
}

/// Where the player goes once the server is ready.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Written into the ticket; the proxy routes the returning player by it.
    pub server_id: String,
    /// Shown to the player.
    pub server_name: String,
    /// The public address the client reconnects to (Transfer target).
    pub host: String,
    pub port: u16,
}

/// How a hold ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Cookie stored and Transfer sent.
    Transferred,
    /// The player got a Disconnect with a reason: the server failed, the wait exceeded
    /// `max_wait`, or nobody reports progress any more. The string says which.
    Failed(String),
    /// The client closed the connection.
    ClientLeft,
    /// The client stopped answering: no login acknowledgement or keep-alive reply in time,
    /// or it stopped reading.
    TimedOut,
    /// The client sent something malformed, oversized or out of place.
    ProtocolError(String),
}

/// Holds players; one instance serves every guest.
pub struct Anteroom {
    settings: AnteroomSettings,
}

impl Anteroom {
    pub fn new(settings: AnteroomSettings) -> Self {
        Self { settings }
    }

    pub fn settings(&self) -> &AnteroomSettings {
        &self.settings
    }

    /// Keeps `guest` waiting until `status` says Ready (Transfer to `dest`) or Failed
    /// (Disconnect), the client goes away, or `max_wait` passes. Never panics on client input.
    ///
    /// Not an `async fn`: the returned future is the hold itself (plus its tracing span), so a
    /// held guest does not pay for a second copy of its arguments.
    pub fn hold(
        &self,
        guest: Guest,
        dest: Destination,
        status: watch::Receiver<WaitStatus>,
    ) -> impl Future<Output = Outcome> + Send + '_ {
        self.hold_proving(guest, dest, status, None)
    }

    /// [`Anteroom::hold`], telling `proven` once the guest has answered its first
    /// keep-alive: a real client, not a script that only sent Login Start. A wake that
    /// costs money can wait for this.
    pub fn hold_proving(
        &self,
        guest: Guest,
        dest: Destination,
        status: watch::Receiver<WaitStatus>,
        proven: Option<oneshot::Sender<()>>,
    ) -> impl Future<Output = Outcome> + Send + '_ {
        let span = tracing::info_span!(
            "anteroom",
            server = %dest.server_id,
            player = %warden_wire::log_safe(&guest.name),
            protocol = guest.protocol,
        );
        hold::run(&self.settings, guest, dest, status, proven).instrument(span)
    }
}
