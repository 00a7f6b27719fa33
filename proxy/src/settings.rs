//! Everything the data plane reads from the config, swapped as one snapshot.
//!
//! A reload builds a whole new [`Snapshot`] and stores it in an `ArcSwap`; each connection
//! pins the snapshot it started with, so routes and limits never change under it.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::limits::LimitSettings;
use crate::route::RouteTable;

#[derive(Debug, Clone, PartialEq)]
pub struct EdgeSettings {
    /// The whole pre-routing phase (PROXY header, handshake, Login Start) must fit in this.
    pub handshake_timeout: Duration,
    /// Largest handshake frame accepted.
    pub max_handshake_bytes: usize,
    /// Largest Login Start frame accepted (1.19 adds a signature; 2 KiB is generous).
    pub max_login_start_bytes: usize,
    pub connect_timeout: Duration,
    /// A session with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Networks allowed to send PROXY protocol headers.
    pub trusted_proxies: Vec<IpNet>,
    pub limits: LimitSettings,
    pub status_ttl: Duration,
    /// How long past its TTL a status may be served when the backend stops answering.
    pub status_stale_for: Duration,
    pub status_fetch_timeout: Duration,
    /// How long a failed status fetch is remembered before the backend is asked again.
    pub status_error_ttl: Duration,
    /// Largest Status Response frame accepted from a backend.
    pub status_max_response_bytes: usize,
    /// Bytes the status cache may hold in all.
    pub status_cache_max_bytes: usize,
    /// How long a player's login Disconnect may wait for a client that does not read.
    pub goodbye_timeout: Duration,
    /// How long a lone `FE` or `FE 01` waits for more bytes before it is answered as a
    /// beta or 1.4 legacy ping (those clients send nothing more).
    pub legacy_grace: Duration,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(5),
            max_handshake_bytes: 1024,
            max_login_start_bytes: 2048,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            trusted_proxies: Vec::new(),
            limits: LimitSettings::default(),
            status_ttl: Duration::from_secs(5),
            status_stale_for: Duration::from_secs(300),
            status_fetch_timeout: Duration::from_secs(3),
            status_error_ttl: Duration::from_secs(2),
            status_max_response_bytes: crate::status::fetch::DEFAULT_MAX_STATUS_BYTES,
            status_cache_max_bytes: 32 << 20,
            goodbye_timeout: Duration::from_secs(2),
            legacy_grace: Duration::from_millis(150),
        }
    }
}

impl EdgeSettings {
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// One consistent view of routes and settings.
#[derive(Debug)]
pub struct Snapshot {
    pub table: RouteTable,
    pub settings: EdgeSettings,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            table: RouteTable::empty(),
            settings: EdgeSettings::default(),
        }
    }
}
