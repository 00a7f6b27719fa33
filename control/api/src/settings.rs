//! The control API's settings (`[api]` in the config file): where it listens, TLS, and the
//! limits on connections, requests and event streams.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The HTTP control API (`/v1`, see docs/operations.md).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Where the API listens. A non-loopback address needs TLS or `insecure_remote`.
    pub listen: String,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy only).
    pub insecure_remote: bool,
    /// Requests per second allowed per token.
    pub rate_limit: u32,
    /// Concurrent API connections. When all are taken, a new connection takes the place of
    /// an idle one (from the source address holding the most); an eighth is kept for health
    /// checks.
    pub max_connections: usize,
    /// Concurrent connections from one source address.
    pub max_connections_per_source: usize,
    /// A connection with no request in progress (new, or kept alive) is closed after this.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A request (TLS handshake, head and body) must arrive within this of its first byte.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Open `/v1/events/stream` streams per token.
    pub max_streams_per_token: usize,
    /// Open `/v1/events/stream` streams in all.
    pub max_streams: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9941".into(),
            tls_cert: None,
            tls_key: None,
            insecure_remote: false,
            rate_limit: 50,
            max_connections: 256,
            max_connections_per_source: 16,
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            max_streams_per_token: 8,
            max_streams: 64,
        }
    }
}
