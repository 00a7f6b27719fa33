//! The config file's shape. Every table rejects unknown keys, so a typo is an error with
//! a line number, not a silently ignored setting.

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Lets a reload take away every server and route the file defined. Without it such a
    /// reload is refused: an editor caught mid-write leaves an empty file.
    #[serde(default)]
    pub allow_empty: bool,
    #[serde(default)]
    pub edge: EdgeConfig,
    #[serde(default)]
    pub status: StatusConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
    /// Wildcard routes: one server per matching host.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub archive: ArchiveSection,
    #[serde(default)]
    pub backup: BackupSection,
    #[serde(default)]
    pub lifecycle: LifecycleSection,
    /// This appliance as a node of a fleet.
    #[serde(default)]
    pub node: NodeSection,
    /// The collector of orphans (archives, backups, set-aside and temporary directories).
    #[serde(default)]
    pub gc: GcSection,
    #[serde(default)]
    pub discovery: DiscoverySection,
    #[serde(default)]
    pub anteroom: AnteroomSection,
    /// The control API; off unless the section is present.
    #[serde(default)]
    pub api: Option<ApiSection>,
    /// The edge↔node QUIC link and this appliance's certificates from the fleet CA; off
    /// unless the section is present.
    #[serde(default)]
    pub link: Option<LinkSection>,
    /// Where events are posted (Discord or generic JSON).
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Live capacity: buy cloud nodes before demand arrives and give empty ones back; off
    /// unless the section is present.
    #[serde(default)]
    pub capacity: Option<warden_capacity::CapacitySettings>,
}

pub use warden_api::ApiSettings as ApiSection;

/// One webhook: every matching event is POSTed to `url`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// `"json"` (the event as JSON) or `"discord"` (a Discord webhook message).
    #[serde(default)]
    pub format: WebhookFormat,
    /// Event names to send (`server_started`, `server_stopped`, `server_failed`,
    /// `server_crashed`, `player_joined`, `player_left`, …); empty sends those six.
    #[serde(default)]
    pub events: Vec<String>,
}

/// How a webhook's body is shaped.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The event as JSON, plus `"event"`: its name.
    #[default]
    Json,
    /// A Discord webhook message.
    Discord,
}

/// The waiting room for 1.20.5+ players while their server wakes or is restored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnteroomSection {
    pub enabled: bool,
    /// The transfer tickets' HMAC key (32+ bytes). Appliances behind one address share it.
    /// Default: `<store.path>/anteroom.key`, created on first start.
    pub key_file: Option<PathBuf>,
    /// A player still waiting after this long is told to come back later.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for AnteroomSection {
    fn default() -> Self {
        Self {
            enabled: true,
            key_file: None,
            max_wait: Duration::from_secs(15 * 60),
        }
    }
}

/// Servers found from Docker labels (`warden.host=…`) instead of config entries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverySection {
    /// Daemon sockets to watch, e.g. `["unix:///var/run/docker.sock"]`; empty disables it.
    pub docker: Vec<String>,
    /// How often the daemons are listed; a new or removed container is routed within it.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for DiscoverySection {
    fn default() -> Self {
        Self {
            docker: Vec::new(),
            interval: Duration::from_secs(5),
        }
    }
}

/// Where server states, events and sessions live.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// `"embedded"` (one appliance) or `"redis"` (several).
    pub kind: Spanned<StoreKind>,
    /// Data directory of the embedded store.
    pub path: PathBuf,
    /// `redis://host:port` for `kind = "redis"`. With `sentinels`, optional: only its
    /// password and database number are used.
    pub url: Option<String>,
    /// Redis Sentinel: `host:port` of each sentinel. The store finds the primary through
    /// them and follows it through a failover, instead of using `url`'s host.
    pub sentinels: Vec<Spanned<String>>,
    /// The name the sentinels watch the primary under (`sentinel monitor NAME …`).
    pub master_name: Option<Spanned<String>>,
    /// With sentinels: how long a wake waits for the store during a failover before the
    /// player is told it is unreachable. Above the sentinels' `down-after-milliseconds`
    /// plus a few seconds.
    #[serde(with = "humantime_serde")]
    pub failover_wait: Duration,
    /// How long ended sessions (and the event feed) are kept; their player time stays in
    /// hourly aggregates, so usage of older periods is still reported. At least 1 hour.
    #[serde(with = "humantime_serde")]
    pub session_retention: Duration,
}

impl StoreSection {
    /// The store to open, or which key `kind` still needs.
    pub fn store_config(&self) -> Result<warden_store::StoreConfig, String> {
        match self.kind.get_ref() {
            StoreKind::Embedded => Ok(warden_store::StoreConfig::Embedded {
                path: self.path.clone(),
            }),
            StoreKind::Redis => match (&self.url, &self.master_name) {
                (url, Some(name)) if !self.sentinels.is_empty() => Ok(
                    warden_store::StoreConfig::Redis(warden_store::RedisConfig::sentinel(
                        url.clone().unwrap_or_else(|| "redis://127.0.0.1/".into()),
                        self.sentinels.iter().map(|s| s.get_ref().clone()).collect(),
                        name.get_ref().clone(),
                    )),
                ),
                (_, None) if !self.sentinels.is_empty() => {
                    Err("store.sentinels needs store.master_name".into())
                }
                (Some(url), _) => Ok(warden_store::StoreConfig::Redis(
                    warden_store::RedisConfig::new(url.clone()),
                )),
                (None, _) => {
                    Err("store.kind = \"redis\" needs store.url (or store.sentinels)".into())
                }
            },
        }
    }

    /// How long wakes wait out a store outage: `failover_wait` with sentinels (a failover
    /// ends it), none with a single Redis or the embedded store (nothing would end it).
    pub fn store_patience(&self) -> Duration {
        if *self.kind.get_ref() == StoreKind::Redis && !self.sentinels.is_empty() {
            self.failover_wait
        } else {
            Duration::ZERO
        }
    }
}

/// Which state store: `[store] kind`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A file under `store.path`, for one appliance.
    Embedded,
    /// A Redis server at `store.url`, shared by several appliances.
    Redis,
}

/// The default `store.failover_wait`: a failover with `down-after-milliseconds 5000`
/// (the README's advice) takes about 6-10 s.
pub const DEFAULT_FAILOVER_WAIT: Duration = Duration::from_secs(15);
/// The default `store.session_retention`: 30 days.
pub const DEFAULT_SESSION_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// The shortest `store.session_retention` accepted.
pub const MIN_SESSION_RETENTION: Duration = Duration::from_secs(3600);

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            kind: Spanned::new(0..0, StoreKind::Embedded),
            path: PathBuf::from("/var/lib/warden"),
            url: None,
            sentinels: Vec::new(),
            master_name: None,
            failover_wait: DEFAULT_FAILOVER_WAIT,
            session_retention: DEFAULT_SESSION_RETENTION,
        }
    }
}

/// Where archived servers go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveSection {
    /// `"local"` (a directory) or `"s3"` (any S3-compatible store).
    pub kind: Spanned<ArchiveKind>,
    pub path: PathBuf,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    /// Names of environment variables holding the credentials (never the secrets).
    pub access_key_env: Option<String>,
    pub secret_key_env: Option<String>,
    /// Caps archive and restore traffic (MiB/s) so one big world does not starve the node.
    pub max_mib_per_sec: Option<f64>,
}

/// The keys an S3 archive is made of (credentials by the names of their variables).
pub struct S3Keys<'a> {
    pub endpoint: &'a str,
    pub region: &'a str,
    pub bucket: &'a str,
    pub access_key_env: &'a str,
    pub secret_key_env: &'a str,
}

impl ArchiveSection {
    /// For `kind = "s3"`: its keys, or which one is missing.
    pub fn s3_keys(&self) -> Result<S3Keys<'_>, String> {
        fn need<'a>(v: &'a Option<String>, key: &str) -> Result<&'a str, String> {
            v.as_deref()
                .ok_or_else(|| format!("archive.kind = \"s3\" needs archive.{key}"))
        }
        Ok(S3Keys {
            endpoint: need(&self.endpoint, "endpoint")?,
            region: self.region.as_deref().unwrap_or("us-east-1"),
            bucket: need(&self.bucket, "bucket")?,
            access_key_env: need(&self.access_key_env, "access_key_env")?,
            secret_key_env: need(&self.secret_key_env, "secret_key_env")?,
        })
    }

    /// The pace limit in bytes per second (`None`: unlimited), or why it is not one.
    pub fn bytes_per_sec(&self) -> Result<Option<f64>, String> {
        match self.max_mib_per_sec {
            Some(mib) if mib.is_finite() && mib > 0.0 => Ok(Some(mib * 1024.0 * 1024.0)),
            Some(mib) => Err(format!(
                "archive.max_mib_per_sec = {mib}: use a positive number"
            )),
            None => Ok(None),
        }
    }
}

/// Where archives go: `[archive] kind`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    /// A directory, `archive.path`.
    Local,
    /// An S3-compatible bucket.
    S3,
}

impl Default for ArchiveSection {
    fn default() -> Self {
        Self {
            kind: Spanned::new(0..0, ArchiveKind::Local),
            path: PathBuf::from("/var/lib/warden/archive"),
            endpoint: None,
            region: None,
            bucket: None,
            access_key_env: None,
            secret_key_env: None,
            max_mib_per_sec: None,
        }
    }
}

/// Backups of managed servers' worlds, to the archive storage under `backups/<server>/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSection {
    pub enabled: bool,
    /// Activity between scheduled backups (online, so only for servers with RCON), e.g.
    /// "6h".
    pub every: Spanned<String>,
    /// Back up at every stop.
    pub at_stop: bool,
    pub retention: RetentionSection,
}

impl Default for BackupSection {
    fn default() -> Self {
        Self {
            enabled: true,
            every: Spanned::new(0..0, "6h".into()),
            at_stop: true,
            retention: RetentionSection::default(),
        }
    }
}

/// Which backups are kept: the newest `last`, and the newest of each of the `hourly` most
/// recent hours, `daily` days and `weekly` weeks that have one. The newest is always kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
}

impl Default for RetentionSection {
    fn default() -> Self {
        let d = warden_archive::backup::Retention::default();
        Self {
            last: d.last,
            hourly: d.hourly,
            daily: d.daily,
            weekly: d.weekly,
        }
    }
}

/// The shortest `backup.every` accepted.
pub const MIN_BACKUP_EVERY: Duration = Duration::from_secs(60);

impl BackupSection {
    /// The engine's backup settings (None: disabled), or what is wrong with `every`.
    pub fn settings(&self) -> Result<Option<warden_lifecycle::BackupSettings>, String> {
        let every = humantime::parse_duration(self.every.get_ref()).map_err(|e| {
            format!(
                "backup.every = {:?} is not a duration: {e}",
                self.every.get_ref()
            )
        })?;
        if every < MIN_BACKUP_EVERY {
            return Err(format!(
                "backup.every = {:?} is shorter than a minute",
                self.every.get_ref()
            ));
        }
        let r = &self.retention;
        Ok(self.enabled.then_some(warden_lifecycle::BackupSettings {
            every,
            at_stop: self.at_stop,
            retention: warden_archive::backup::Retention {
                last: r.last,
                hourly: r.hourly,
                daily: r.daily,
                weekly: r.weekly,
            },
        }))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleSection {
    /// How long a joining player is held while their server starts.
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
    /// This appliance's name in the store (defaults to the host name).
    pub appliance: Option<String>,
    /// Wakes players from one /24 (IPv4) or /64 (IPv6) may cause per hour, across all
    /// servers; 0: no limit. Joining a wake under way is free.
    pub wakes_per_source_per_hour: u32,
    /// Wakes players may cause per server per hour; 0: no limit.
    pub wakes_per_server_per_hour: u32,
}

impl Default for LifecycleSection {
    fn default() -> Self {
        let d = warden_lifecycle::LifecycleSettings::default();
        Self {
            hold: d.hold,
            appliance: None,
            wakes_per_source_per_hour: d.wakes_per_source_per_hour,
            wakes_per_server_per_hour: d.wakes_per_server_per_hour,
        }
    }
}

/// `[gc]`: the collector deletes only orphans older than `min_age`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcSection {
    /// Default 72 h: time to notice a mistake (a server deleted by accident) first.
    #[serde(with = "humantime_serde")]
    pub min_age: Duration,
}

impl Default for GcSection {
    fn default() -> Self {
        Self {
            min_age: warden_lifecycle::gc::MIN_AGE,
        }
    }
}

/// This appliance as a node of a fleet: what it does, what it offers, where it is reached.
/// A single box needs none of it: it accepts players and runs every server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// `["edge", "node"]` (the default): accepts players (`edge`) and runs servers (`node`).
    pub roles: Spanned<Vec<warden_store::NodeRole>>,
    /// Memory for game servers, GB; wakes that do not fit wait. Default: this machine's RAM
    /// less 1 GiB, used for placement only (wakes are not held back, as before nodes).
    pub memory_gb: Option<Spanned<f64>>,
    /// Where other appliances reach this node's servers. Default: the host of the first
    /// server's backend if it is an IP address, else 127.0.0.1.
    pub address: Option<Spanned<String>>,
    /// Free-form labels (`zone = "fsn1"`), which API-defined servers can require.
    pub labels: std::collections::BTreeMap<String, String>,
    /// How long after another node's lease lapsed it is declared dead and its servers are
    /// recovered on healthy nodes from their newest backup. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub dead_after: Duration,
    /// Recover dead nodes' servers automatically (default true). Off: a dead node's
    /// servers wait for it to come back.
    pub recover: bool,
    /// A drain's disruption budget: servers moved at once (default 1).
    pub moves_at_once: Spanned<usize>,
    /// When the nightly consolidation pass runs ("HH:MM", UTC), or "off". Default "04:00".
    pub consolidate: Spanned<String>,
    /// How edges reach this node's servers: `"tcp"` (the default) or `"quic"` (the warm,
    /// authenticated link; needs `[link]` with `listen`).
    pub link: Spanned<LinkChoice>,
}

/// How edges reach a node's servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LinkChoice {
    #[default]
    Tcp,
    Quic,
}

/// `[link]`: where this node accepts links, and the certificates from the fleet CA
/// (`warden ca init`, `warden cert issue`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSection {
    /// UDP address a node accepts edges' links on, e.g. "0.0.0.0:25590". An edge-only
    /// appliance leaves it out.
    pub listen: Option<Spanned<String>>,
    /// The fleet CA's certificate (`ca.crt`).
    pub ca: PathBuf,
    /// This appliance's certificate and key (`ID.crt`, `ID.key`).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA's revocation list (`crl.pem`), if any certificate was revoked.
    #[serde(default)]
    pub crl: Option<PathBuf>,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            roles: Spanned::new(
                0..0,
                vec![warden_store::NodeRole::Edge, warden_store::NodeRole::Node],
            ),
            memory_gb: None,
            address: None,
            labels: Default::default(),
            dead_after: warden_lifecycle::DEAD_AFTER,
            recover: true,
            moves_at_once: Spanned::new(0..0, 1),
            consolidate: Spanned::new(0..0, "04:00".into()),
            link: Spanned::new(0..0, LinkChoice::Tcp),
        }
    }
}

pub use warden_api::spec::{
    default_archive_after, default_memory_gb, default_sleep_after, default_start_timeout,
    default_stop_timeout, RconConfig, RuntimeConfig,
};

/// One address or several.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum Listen {
    One(String),
    Many(Vec<String>),
}

impl Listen {
    pub fn addrs(&self) -> Vec<String> {
        match self {
            Listen::One(a) => vec![a.clone()],
            Listen::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    pub listen: Listen,
    /// Networks allowed to send PROXY protocol headers.
    pub trusted_proxies: Vec<Spanned<String>>,
    /// `"drop"` (close silently) or the id of a server that takes unknown hosts.
    pub unknown_host: Spanned<String>,
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    pub max_handshake_bytes: usize,
    pub max_login_start_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long a player's login Disconnect may wait for a client that does not read.
    #[serde(with = "humantime_serde")]
    pub goodbye_timeout: Duration,
    /// How long a lone legacy ping byte (`FE`, `FE 01`) waits for more before it is answered.
    #[serde(with = "humantime_serde")]
    pub legacy_grace: Duration,
    /// Unix socket over which a new binary takes the listeners (graceful upgrade).
    /// Default: `<store.path>/run/upgrade.sock`, in a directory only Warden's user can enter.
    pub upgrade_sock: Option<PathBuf>,
    /// How long an old process keeps its live sessions after an upgrade or SIGTERM.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// Worker threads for the edge (0 = one per core).
    pub threads: usize,
    pub limits: LimitsConfig,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: Listen::One("0.0.0.0:25565".into()),
            trusted_proxies: Vec::new(),
            unknown_host: Spanned::new(0..0, "drop".into()),
            handshake_timeout: Duration::from_secs(5),
            max_handshake_bytes: 1024,
            max_login_start_bytes: 2048,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            goodbye_timeout: Duration::from_secs(2),
            legacy_grace: Duration::from_millis(150),
            upgrade_sock: None,
            grace_period: Duration::from_secs(6 * 3600),
            threads: 0,
            limits: LimitsConfig::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Status pings per second per /24 (IPv4) or /64 (IPv6).
    pub status_per_second: u32,
    /// Login attempts per second per /24 or /64.
    pub login_per_second: u32,
    /// Concurrent connections per /24 or /64.
    pub connections_per_bucket: u32,
    /// Concurrent client connections in total.
    pub max_connections: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = warden_proxy::limits::LimitSettings::default();
        Self {
            status_per_second: d.status_per_second,
            login_per_second: d.login_per_second,
            connections_per_bucket: d.connections_per_bucket,
            max_connections: d.max_connections,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// A backend is asked at most once per this long per host.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How long past its TTL an answer may be served while the backend is not answering.
    #[serde(with = "humantime_serde")]
    pub stale_for: Duration,
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// A failed fetch (down, invalid, too big) is remembered this long.
    #[serde(with = "humantime_serde")]
    pub error_ttl: Duration,
    /// Largest status a backend may answer with, in bytes.
    pub max_response_bytes: usize,
    /// Memory the status cache may hold in all, in MiB.
    pub cache_max_mib: usize,
}

impl Default for StatusConfig {
    fn default() -> Self {
        let d = warden_proxy::settings::EdgeSettings::default();
        Self {
            cache_ttl: d.status_ttl,
            stale_for: d.status_stale_for,
            fetch_timeout: d.status_fetch_timeout,
            error_ttl: d.status_error_ttl,
            max_response_bytes: d.status_max_response_bytes,
            cache_max_mib: d.status_cache_max_bytes >> 20,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `/metrics` is served; empty to disable.
    pub listen: String,
    /// Concurrent connections (one request each); as for the API, a new one takes an idle
    /// one's place when all are taken.
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// A connection that has not started its request is closed after this.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A request's head must arrive within this of its first byte.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9940".into(),
            max_connections: 64,
            max_connections_per_source: 16,
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// How Warden forwards to a server (shared by servers and wildcard routes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub id: Spanned<String>,
    pub hosts: Vec<Spanned<String>>,
    pub backend: Spanned<String>,
    #[serde(default)]
    pub rewrite_host: Option<String>,
    #[serde(default)]
    pub proxy_protocol: bool,
    #[serde(default)]
    pub accepts_transfers: bool,
    #[serde(default)]
    pub motd: MotdConfig,
    /// Set to let Warden start and stop the server; absent means always on.
    #[serde(default)]
    pub runtime: Option<RuntimeConfig>,
    #[serde(default)]
    pub rcon: Option<RconConfig>,
    #[serde(default = "default_sleep_after", with = "humantime_serde")]
    pub sleep_after: Duration,
    #[serde(default = "default_archive_after", with = "humantime_serde")]
    pub archive_after: Duration,
    #[serde(default = "default_start_timeout", with = "humantime_serde")]
    pub start_timeout: Duration,
    #[serde(default = "default_stop_timeout", with = "humantime_serde")]
    pub stop_timeout: Duration,
    #[serde(default = "default_memory_gb")]
    pub memory_gb: f64,
    /// The server's address on each appliance (by `lifecycle.appliance` name), for fleets:
    /// after `warden migrate ID --to NODE`, every edge forwards to NODE's address.
    #[serde(default)]
    pub node_backends: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Defaults to the host pattern.
    pub id: Option<Spanned<String>>,
    pub host: Spanned<String>,
    pub backend: Spanned<String>,
    #[serde(default)]
    pub rewrite_host: Option<String>,
    #[serde(default)]
    pub proxy_protocol: bool,
    #[serde(default)]
    pub accepts_transfers: bool,
    #[serde(default)]
    pub motd: MotdConfig,
}

/// Server-list texts Warden shows when it answers for the server.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct MotdConfig {
    pub offline: Option<String>,
    pub sleeping: Option<String>,
    pub starting: Option<String>,
    pub stopping: Option<String>,
    pub archived: Option<String>,
    pub failed: Option<String>,
    pub version_name: Option<String>,
    /// A 64×64 PNG, relative to the config file.
    pub favicon: Option<Spanned<PathBuf>>,
}

pub(crate) fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}
