//! How a client connection ended, counted and logged in one place.
//!
//! No step of the path touches the outcome metrics: each returns an [`Ending`], and the
//! connection hands it to [`finish`] once, as pingora's logging phase does. `finish` counts
//! and logs first and says the player's goodbye after, so whoever reads the metrics once the
//! player has the message finds it counted. The only metrics recorded elsewhere measure a
//! connection while it lives: accepted and open connections (`connection.rs`), backend
//! connect time and relayed bytes (`forward.rs`).

use std::io;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::goodbye::{self, Goodbye};
use super::preroute::PrerouteError;
use crate::metrics::{BackendError, CacheResult, Malformed, Metrics, Reject};
use crate::relay::{Ended, Moved};
use crate::route::ServerId;
use crate::wire::log_safe;

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum Closed {
    /// Reading the PROXY header or the first message failed.
    Preroute(PrerouteError),
    /// Turned away before reaching a backend.
    Rejected(Reject),
    /// Malformed input, turned away with `reject` when there is one.
    Malformed(Malformed, Option<Reject>),
    /// No route for the handshake's host.
    UnknownHost { host: String },
    /// The connection is this edge's own backend connection: a routing loop.
    Loop {
        host: String,
        server: Option<ServerId>,
    },
    /// Closed before routing to make room for a newer connection; a status client may have
    /// had its answer already (then it counts as answered too).
    Shed(Option<Answered>),
    /// A status request or legacy ping answered at the edge.
    Answered(Answered),
    /// A legacy ping whose status lookup ran out of time.
    LegacyTimedOut,
    /// A login that lost the race with the shedder just before it was routed.
    Unrouted,
    /// The control plane refused the player (the goodbye says why).
    Refused,
    /// The control plane took the connection over (the anteroom) and has let it go.
    Held,
    /// The backend could not be reached, or hung up before the login was replayed.
    Backend(BackendError),
    /// A player's session with a backend.
    Session(Session),
}

/// What the edge answered on a backend's behalf. A step sets it as soon as it is known,
/// so that a connection shed in the middle of the exchange is still counted as answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answered {
    /// A status request, and where its answer came from.
    Status(StatusFrom),
    /// A legacy ping, and the status cache's part in its answer, if it had one.
    Legacy(Option<StatusFrom>),
}

/// Where a status answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusFrom {
    /// Warden's stand-in: the server is not up.
    Standin,
    /// The node's own word, from the link's control stream.
    Link,
    /// The status cache, with what the cache holds after the lookup.
    Cache {
        result: CacheResult,
        error: Option<BackendError>,
        entries: usize,
        bytes: usize,
    },
}

/// A session that reached its backend.
#[derive(Debug)]
pub(crate) struct Session {
    pub player: String,
    pub server: ServerId,
    pub started: Instant,
    pub ended: io::Result<Ended>,
    pub moved: Moved,
}

/// How a connection ended, and what its player is told, if anything.
#[derive(Debug)]
pub(crate) struct Ending {
    pub closed: Closed,
    pub goodbye: Option<(TcpStream, Goodbye)>,
}

impl Closed {
    /// This ending, with a login Disconnect for the player.
    pub(crate) fn saying(self, client: TcpStream, goodbye: Goodbye) -> Ending {
        Ending {
            closed: self,
            goodbye: Some((client, goodbye)),
        }
    }
}

impl From<Closed> for Ending {
    fn from(closed: Closed) -> Self {
        Ending {
            closed,
            goodbye: None,
        }
    }
}

/// Counts and logs how the connection ended, then says the goodbye (within `goodbye_within`).
pub(crate) async fn finish(metrics: &Metrics, goodbye_within: Duration, ending: Ending) {
    record(metrics, ending.closed);
    if let Some((client, words)) = ending.goodbye {
        goodbye::say(client, &words, goodbye_within).await;
    }
}

fn record(m: &Metrics, closed: Closed) {
    match closed {
        Closed::Preroute(e) => {
            debug!(error = %log_safe(&e), "closed before routing");
            let reason = match e {
                PrerouteError::Timeout => Reject::Timeout,
                PrerouteError::UntrustedProxyHeader => Reject::UntrustedProxyHeader,
                PrerouteError::ProxyHeader(_) => Reject::BadProxyHeader,
                PrerouteError::Closed => return,
                _ => Reject::BadHandshake,
            };
            if !matches!(e, PrerouteError::Timeout) {
                m.handshake_error(Malformed::Kind(e.kind()));
            }
            m.reject(reason);
        }
        Closed::Rejected(reason) => m.reject(reason),
        Closed::Malformed(what, reject) => {
            m.handshake_error(what);
            if let Some(reason) = reject {
                m.reject(reason);
            }
        }
        Closed::UnknownHost { host } => {
            debug!(host = %log_safe(&host), "unknown host");
            m.reject(Reject::UnknownHost);
        }
        Closed::Loop { host, server } => {
            m.reject(Reject::Loop);
            warn!(
                host = %log_safe(&host),
                server = %log_safe(server.as_deref().unwrap_or("-")),
                "routing loop: a backend address leads back to this Warden; join refused after one hop"
            );
        }
        Closed::Shed(answered) => {
            if let Some(a) = answered {
                answer(m, a);
            }
            m.connections_shed.inc();
            debug!("shed before routing to make room for a newer connection");
        }
        Closed::Answered(a) => answer(m, a),
        Closed::LegacyTimedOut => {
            m.legacy_pings.inc();
            m.reject(Reject::Timeout);
        }
        Closed::Unrouted | Closed::Refused | Closed::Held => {}
        Closed::Backend(kind) => m.backend_error(kind),
        Closed::Session(s) => {
            match s.ended {
                Ok(Ended::BackendSilent) => m.backend_error(BackendError::ClosedBeforeLogin),
                Ok(how) => debug!(?how, moved = ?s.moved, "session ended"),
                Err(e) => debug!(error = %e, moved = ?s.moved, "session ended with an error"),
            }
            info!(
                player = %log_safe(&s.player),
                server = %s.server,
                secs = s.started.elapsed().as_secs(),
                up = s.moved.client_to_backend,
                down = s.moved.backend_to_client,
                "session closed"
            );
        }
    }
}

fn answer(m: &Metrics, answered: Answered) {
    match answered {
        Answered::Status(from) => status(m, from),
        Answered::Legacy(from) => {
            m.legacy_pings.inc();
            if let Some(from) = from {
                status(m, from);
            }
        }
    }
}

fn status(m: &Metrics, from: StatusFrom) {
    match from {
        StatusFrom::Standin => m.status_cache(CacheResult::Standin),
        StatusFrom::Link => m.status_cache(CacheResult::Link),
        StatusFrom::Cache {
            result,
            error,
            entries,
            bytes,
        } => {
            m.status_cache_size(entries, bytes);
            m.status_cache(result);
            if let Some(kind) = error {
                m.backend_error(kind);
            }
        }
    }
}
