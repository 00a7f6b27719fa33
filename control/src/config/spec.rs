//! The server model: one [`ServerSpec`] per server, whichever place defines it (the config
//! file, the control API, a Docker container's labels), built once when that source is
//! read. The inventory routes specs and hands the managed ones to the engine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use warden_proxy::route::{Server, UnknownHost};
use warden_proxy::settings::EdgeSettings;
use warden_runtime::docker::DiscoveredServer;

use super::model::{RconConfig, RuntimeConfig};

/// One server as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    /// How the edge forwards to it: id, backend, options, and the texts Warden answers
    /// with (favicon already read).
    pub route: Server,
    /// The hosts it claims. A file's are normalised (and checked) when it is read; the
    /// run-time sources' are normalised when the routing table is built, which skips a
    /// server whose host does not parse.
    pub hosts: Vec<String>,
    /// Set when Warden starts and stops it; absent means always on (routing only).
    pub managed: Option<Managed>,
}

impl ServerSpec {
    pub fn id(&self) -> &str {
        &self.route.id
    }
}

/// How Warden runs a server it manages.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    pub runtime: RuntimeSpec,
    pub rcon: Option<RconConfig>,
    pub sleep_after: Duration,
    pub archive_after: Duration,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
    pub memory_gb: f64,
    /// The server's address on each appliance (by name), for placement and migration.
    pub node_backends: BTreeMap<String, String>,
    /// Every appliance has this definition (API-defined): any node may own it.
    pub anywhere: bool,
    /// Labels its owner node must carry.
    pub node_labels: BTreeMap<String, String>,
}

/// Where a managed server runs.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeSpec {
    /// A process or container Warden defines and owns, data and archive included.
    Owned(RuntimeConfig),
    /// A labelled container Warden adopts: started and stopped, never recreated, archived
    /// or deleted. Its `running` flag is always false here: it is state, not definition.
    Adopted(DiscoveredServer),
}

/// What the config file defines, checked: its servers and wildcard routes as specs, and
/// the rest of the data plane's snapshot. The inventory keeps the last one a reload
/// accepted, so run-time changes never read the file again.
#[derive(Debug, Clone)]
pub struct FileServers {
    /// `[[servers]]`, in file order.
    pub servers: Vec<ServerSpec>,
    /// `[[routes]]` (wildcards), in file order.
    pub routes: Vec<ServerSpec>,
    pub unknown_host: UnknownHost,
    pub settings: EdgeSettings,
    /// Warden's own listeners (edge, API, metrics), by config key: no backend may be one.
    pub own_listeners: Vec<(&'static str, SocketAddr)>,
}
