//! The data plane's Prometheus metrics.
//!
//! Names follow Prometheus conventions (prefix `warden_`, base units, `_total` counters).
//! Labels are bounded sets — reasons, kinds, directions, server ids — never addresses or
//! player names, so a scan from a million IPs cannot blow up the series count.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Why a connection was closed before it reached a backend.
#[derive(Debug, Clone, Copy)]
pub enum Reject {
    GlobalLimit,
    BucketLimit,
    StatusRate,
    LoginRate,
    UntrustedProxyHeader,
    BadProxyHeader,
    BadHandshake,
    Timeout,
    UnknownHost,
    Shutdown,
    /// A connection from this Warden to itself: a backend points back at the edge.
    Loop,
}

impl Reject {
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::GlobalLimit => "global_limit",
            Reject::BucketLimit => "bucket_limit",
            Reject::StatusRate => "status_rate",
            Reject::LoginRate => "login_rate",
            Reject::UntrustedProxyHeader => "untrusted_proxy_header",
            Reject::BadProxyHeader => "bad_proxy_header",
            Reject::BadHandshake => "bad_handshake",
            Reject::Timeout => "timeout",
            Reject::UnknownHost => "unknown_host",
            Reject::Shutdown => "shutdown",
            Reject::Loop => "loop",
        }
    }
}

/// A backend failure a player or a status request ran into (`warden_backend_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    /// The backend refused the connection.
    Connect,
    /// The backend did not accept the connection within `connect_timeout`.
    ConnectTimeout,
    /// The backend hung up before it said anything to a joining player.
    ClosedBeforeLogin,
    /// A status request to the backend failed.
    Status,
    /// The backend's status was over `status_max_response_bytes`.
    StatusTooLarge,
}

impl BackendError {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendError::Connect => "connect",
            BackendError::ConnectTimeout => "connect_timeout",
            BackendError::ClosedBeforeLogin => "closed_before_login",
            BackendError::Status => "status",
            BackendError::StatusTooLarge => "status_too_large",
        }
    }
}

/// How a status request was answered at the edge (`warden_status_cache_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    /// Fetched from the backend just now.
    Miss,
    /// Past its TTL, served while the backend does not answer.
    Stale,
    /// The fetch failed just now.
    Error,
    /// A recent failure, remembered.
    ErrorCached,
    /// The server is not up: Warden's own stand-in, no cache involved.
    Standin,
    /// What the server's node said on the link's control stream: nothing crossed the link.
    Link,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Stale => "stale",
            CacheResult::Error => "error",
            CacheResult::ErrorCached => "error_cached",
            CacheResult::Standin => "standin",
            CacheResult::Link => "link",
        }
    }
}

/// What was malformed before routing (`warden_handshake_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A read or decoding error, by its own kind (`WireError::kind` and the edge's
    /// pre-routing errors).
    Kind(&'static str),
    /// The handshake's address is not a usable host name.
    BadHost,
    /// A status client sent something other than a Status Request.
    BadStatusRequest,
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::Kind(kind) => kind,
            Malformed::BadHost => "bad_host",
            Malformed::BadStatusRequest => "bad_status_request",
        }
    }
}

/// The two directions of `warden_bytes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToBackend,
    BackendToClient,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToBackend => "client_to_backend",
            Direction::BackendToClient => "backend_to_client",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub accepted: IntCounter,
    rejected: IntCounterVec,
    pub sessions: IntGaugeVec,
    pub connections_open: IntGauge,
    /// Pre-routing connections closed to make room for new ones.
    pub connections_shed: IntCounter,
    /// Client connections the file-descriptor limit allows.
    pub connections_fd_capacity: IntGauge,
    bytes: IntCounterVec,
    pub backend_connect: Histogram,
    backend_errors: IntCounterVec,
    status_cache: IntCounterVec,
    status_cache_entries: IntGauge,
    status_cache_bytes: IntGauge,
    handshake_errors: IntCounterVec,
    pub legacy_pings: IntCounter,
    pub reloads: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let accepted = IntCounter::new(
            "warden_connections_accepted_total",
            "TCP connections accepted at the edge",
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "warden_connections_rejected_total",
                "Connections closed before routing, by reason",
            ),
            &["reason"],
        )?;
        let sessions = IntGaugeVec::new(
            Opts::new(
                "warden_sessions_active",
                "Player sessions currently proxied, per server",
            ),
            &["server"],
        )?;
        let connections_open = IntGauge::new(
            "warden_connections_open",
            "Client connections currently open at the edge",
        )?;
        let connections_shed = IntCounter::new(
            "warden_connections_shed_total",
            "Pre-routing connections closed (oldest first) to make room at the connection cap",
        )?;
        let connections_fd_capacity = IntGauge::new(
            "warden_connections_fd_capacity",
            "Client connections the file-descriptor limit allows (two descriptors each)",
        )?;
        let bytes = IntCounterVec::new(
            Opts::new("warden_bytes_total", "Bytes relayed, by direction"),
            &["direction"],
        )?;
        let backend_connect = Histogram::with_opts(
            HistogramOpts::new(
                "warden_backend_connect_duration_seconds",
                "Time to open a TCP connection to a backend",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let backend_errors = IntCounterVec::new(
            Opts::new(
                "warden_backend_errors_total",
                "Backend failures seen by players, by kind",
            ),
            &["kind"],
        )?;
        let status_cache = IntCounterVec::new(
            Opts::new(
                "warden_status_cache_total",
                "Status requests answered at the edge, by cache result",
            ),
            &["result"],
        )?;
        let status_cache_entries = IntGauge::new(
            "warden_status_cache_entries",
            "Keys (host and backend) held in the status cache",
        )?;
        let status_cache_bytes = IntGauge::new(
            "warden_status_cache_bytes",
            "Bytes held in the status cache, as charged to its budget",
        )?;
        let handshake_errors = IntCounterVec::new(
            Opts::new(
                "warden_handshake_errors_total",
                "Malformed pre-routing input, by kind",
            ),
            &["kind"],
        )?;
        let legacy_pings =
            IntCounter::new("warden_legacy_pings_total", "Pre-1.7 (0xFE) pings answered")?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "warden_config_reloads_total",
                "Configuration reloads, by result",
            ),
            &["result"],
        )?;
        let build = IntGaugeVec::new(
            Opts::new(
                "warden_build_info",
                "Build information; the value is always 1",
            ),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for c in [
            Box::new(accepted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rejected.clone()),
            Box::new(sessions.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_shed.clone()),
            Box::new(connections_fd_capacity.clone()),
            Box::new(bytes.clone()),
            Box::new(backend_connect.clone()),
            Box::new(backend_errors.clone()),
            Box::new(status_cache.clone()),
            Box::new(status_cache_entries.clone()),
            Box::new(status_cache_bytes.clone()),
            Box::new(handshake_errors.clone()),
            Box::new(legacy_pings.clone()),
            Box::new(reloads.clone()),
            Box::new(build),
        ] {
            registry.register(c)?;
        }
        Ok(Self {
            registry,
            accepted,
            rejected,
            sessions,
            connections_open,
            connections_shed,
            connections_fd_capacity,
            bytes,
            backend_connect,
            backend_errors,
            status_cache,
            status_cache_entries,
            status_cache_bytes,
            handshake_errors,
            legacy_pings,
            reloads,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn reject(&self, reason: Reject) {
        self.rejected.with_label_values(&[reason.as_str()]).inc();
    }

    pub fn handshake_error(&self, what: Malformed) {
        self.handshake_errors
            .with_label_values(&[what.as_str()])
            .inc();
    }

    pub fn status_cache(&self, result: CacheResult) {
        self.status_cache
            .with_label_values(&[result.as_str()])
            .inc();
    }

    pub fn status_cache_size(&self, entries: usize, bytes: usize) {
        self.status_cache_entries.set(entries as i64);
        self.status_cache_bytes.set(bytes as i64);
    }

    pub fn backend_error(&self, kind: BackendError) {
        self.backend_errors
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// Counters for the two relay directions, resolved once per session.
    pub fn byte_counters(&self) -> (IntCounter, IntCounter) {
        (
            self.bytes
                .with_label_values(&[Direction::ClientToBackend.as_str()]),
            self.bytes
                .with_label_values(&[Direction::BackendToClient.as_str()]),
        )
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
