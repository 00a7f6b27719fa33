//! What the engine knows about one server it manages.

use std::sync::Arc;
use std::time::Duration;

use warden_archive::ArchiveStore;
use warden_runtime::Runtime;

use super::ServerData;

pub struct ManagedServer {
    pub id: String,
    /// `host:port` the readiness probe pings.
    pub backend: String,
    pub proxy_protocol: bool,
    pub runtime: Arc<dyn Runtime>,
    /// The world archived and restored; None for servers Warden cannot archive (adopted
    /// containers whose spec it does not own).
    pub data: Option<ServerData>,
    pub sleep_after: Duration,
    pub archive_after: Duration,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
    pub memory_gb: f64,
    /// `(address, password)` for graceful stops and warm-swap transfers.
    pub rcon: Option<(String, String)>,
    /// Where archives go; None disables archiving.
    pub archive: Option<Arc<dyn ArchiveStore>>,
    /// The server's address on each appliance, for placement and migration.
    pub node_backends: std::collections::BTreeMap<String, String>,
    /// Every appliance of the fleet has this definition (it was made through the API), so
    /// placement may give it to any node. False: only appliances whose config (or Docker
    /// daemon) defines it can run it, and this one does.
    pub anywhere: bool,
    /// Labels a node must carry to own it (placement constraints).
    pub node_labels: std::collections::BTreeMap<String, String>,
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    /// How long a joining player is held while the server starts (clients give up at ~30 s).
    pub hold: Duration,
    /// How often idle and archive timers are checked.
    pub tick: Duration,
    /// This appliance's name (wake lock owner, session records).
    pub appliance: String,
    /// The anteroom for 1.20.5+ players; None holds every player in the plain hold.
    pub anteroom: Option<warden_anteroom::AnteroomSettings>,
    /// Wakes players from one /24 (IPv4) or /64 (IPv6) may cause per hour; 0: no limit.
    pub wakes_per_source_per_hour: u32,
    /// Wakes players may cause per server per hour; 0: no limit.
    pub wakes_per_server_per_hour: u32,
    /// This appliance as a node of the fleet: roles, capacity, address, labels.
    pub node: super::NodeSettings,
    /// Backups (`[backup]`); None disables them.
    pub backup: Option<super::BackupSettings>,
    /// How long a wake (and any transition) waits for an unavailable store before it
    /// gives up: time for a Redis Sentinel failover. Zero: give up at once.
    pub store_patience: Duration,
    /// The collector deletes only orphans older than this.
    pub gc_min_age: Duration,
    /// The fleet's id (`warden_store::fleet_id`): the collector considers only Docker
    /// containers and volumes labelled with it. Empty: it considers none.
    pub fleet: String,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            hold: Duration::from_secs(25),
            tick: Duration::from_secs(1),
            appliance: "warden".into(),
            anteroom: None,
            wakes_per_source_per_hour: 20,
            wakes_per_server_per_hour: 30,
            node: super::NodeSettings::default(),
            backup: None,
            store_patience: Duration::ZERO,
            gc_min_age: super::gc::MIN_AGE,
            fleet: String::new(),
        }
    }
}
