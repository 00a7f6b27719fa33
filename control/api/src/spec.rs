//! The server as the API's clients write it: the JSON body of `POST /v1/servers` and its
//! OpenAPI schema, its checks, and the runtime and RCON shapes the config file shares. The
//! binary turns a spec into a managed server and routes; this crate only checks and stores.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warden_proxy::wire::normalize_host;
use warden_store::StoreError;

/// A server as the API creates it. Durations are in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// 1-64 characters: lowercase letters, digits, `-`, `_`, `.`.
    #[schema(example = "creative")]
    pub id: String,
    /// Host names players connect with (no wildcards), 1-32 of them.
    #[schema(example = json!(["creative.play.example.com"]))]
    pub hosts: Vec<String>,
    /// `ip:port` of the game server.
    #[schema(example = "127.0.0.1:25570")]
    pub backend: String,
    /// How Warden starts and stops it; absent means always on (routing only).
    #[serde(default)]
    pub runtime: Option<RuntimeConfig>,
    #[serde(default)]
    pub rcon: Option<RconConfig>,
    #[serde(default = "default_sleep_after_secs")]
    #[schema(minimum = 10, maximum = 2592000)]
    pub sleep_after_secs: u64,
    #[serde(default = "default_archive_after_secs")]
    #[schema(minimum = 60, maximum = 31536000)]
    pub archive_after_secs: u64,
    #[serde(default = "default_start_timeout_secs")]
    #[schema(minimum = 1, maximum = 3600)]
    pub start_timeout_secs: u64,
    #[serde(default = "default_stop_timeout_secs")]
    #[schema(minimum = 1, maximum = 3600)]
    pub stop_timeout_secs: u64,
    #[serde(default = "default_memory_gb")]
    #[schema(minimum = 0.1, maximum = 4096)]
    pub memory_gb: f64,
    #[serde(default)]
    pub proxy_protocol: bool,
    #[serde(default)]
    pub accepts_transfers: bool,
    /// The server's `ip:port` on each appliance (by name), for placement and migration.
    #[serde(default)]
    pub node_backends: BTreeMap<String, String>,
    /// Labels a node must carry to own it (e.g. `{"zone": "fsn1"}`); any node otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
}

fn default_sleep_after_secs() -> u64 {
    default_sleep_after().as_secs()
}
fn default_archive_after_secs() -> u64 {
    default_archive_after().as_secs()
}
fn default_start_timeout_secs() -> u64 {
    default_start_timeout().as_secs()
}
fn default_stop_timeout_secs() -> u64 {
    default_stop_timeout().as_secs()
}

impl ServerSpec {
    /// Checks every field; the message names the field and what is allowed.
    pub fn check(&self) -> Result<(), String> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && !self.id.starts_with('.')
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !id_ok {
            return Err(format!(
                "id {:?}: use 1-64 lowercase letters, digits, '-', '_' or '.'",
                self.id
            ));
        }
        if self.hosts.is_empty() || self.hosts.len() > 32 {
            return Err("hosts: give 1 to 32 host names".into());
        }
        for h in &self.hosts {
            if h.contains('*') {
                return Err(format!("hosts: {h:?}: wildcards are for the config file"));
            }
            normalize_host(h).map_err(|e| format!("hosts: {h:?}: {e}"))?;
        }
        if self.backend.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "backend {:?}: use ip:port, e.g. \"127.0.0.1:25570\"",
                self.backend
            ));
        }
        let within = |name: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} = {v}: use {lo} to {hi}"))
            }
        };
        within("sleep_after_secs", self.sleep_after_secs, 10, 30 * 86400)?;
        within(
            "archive_after_secs",
            self.archive_after_secs,
            60,
            365 * 86400,
        )?;
        within("start_timeout_secs", self.start_timeout_secs, 1, 3600)?;
        within("stop_timeout_secs", self.stop_timeout_secs, 1, 3600)?;
        if !(self.memory_gb.is_finite() && self.memory_gb >= 0.1 && self.memory_gb <= 4096.0) {
            return Err(format!("memory_gb = {}: use 0.1 to 4096", self.memory_gb));
        }
        for (k, v) in &self.node_labels {
            if k.is_empty() || k.len() > 64 || v.len() > 128 {
                return Err(format!(
                    "node_labels.{k} = {v:?}: keys of 1-64 characters, values up to 128"
                ));
            }
        }
        for (node, addr) in &self.node_backends {
            if node.is_empty() || addr.parse::<SocketAddr>().is_err() {
                return Err(format!("node_backends.{node} = {addr:?}: use ip:port"));
            }
        }
        match &self.runtime {
            None => {}
            Some(RuntimeConfig::Process { command, dir }) => {
                if command.is_empty() || command.iter().any(|c| c.is_empty()) {
                    return Err("runtime.command: give the program and its arguments".into());
                }
                if !dir.is_absolute() {
                    return Err("runtime.dir: use an absolute path".into());
                }
            }
            Some(RuntimeConfig::Docker {
                container,
                image,
                volume,
                ..
            }) => {
                for (name, v) in [
                    ("container", container),
                    ("image", image),
                    ("volume", volume),
                ] {
                    if v.is_empty() || v.len() > 255 || v.chars().any(|c| c.is_whitespace()) {
                        return Err(format!("runtime.{name}: give a name without spaces"));
                    }
                }
            }
        }
        if let Some(r) = &self.rcon {
            r.address
                .parse::<SocketAddr>()
                .map_err(|_| format!("rcon.address {:?}: use ip:port", r.address))?;
            if std::env::var_os(&r.password_env).is_none() {
                return Err(format!(
                    "rcon.password_env: {} is not set in the appliance's environment",
                    r.password_env
                ));
            }
        }
        Ok(())
    }
}

/// How a managed server runs.
#[derive(Debug, Deserialize, Serialize, Clone, PartialEq, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RuntimeConfig {
    /// A local command in a working directory (its data directory).
    Process {
        command: Vec<String>,
        #[schema(value_type = String)]
        dir: PathBuf,
    },
    /// A Docker container with host networking and its data in a named volume.
    Docker {
        container: String,
        image: String,
        volume: String,
        /// Command override (the image's default otherwise).
        #[serde(default)]
        cmd: Option<Vec<String>>,
        #[serde(default)]
        env: Vec<String>,
        /// Read-only host binds, e.g. "/srv/mods:/mods:ro".
        #[serde(default)]
        binds: Vec<String>,
        /// A non-default daemon socket (`unix:///…`); the local daemon otherwise.
        #[serde(default)]
        socket: Option<String>,
    },
}

/// RCON for graceful stops; the password comes from an environment variable.
#[derive(Debug, Deserialize, Serialize, Clone, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RconConfig {
    pub address: String,
    pub password_env: String,
}

pub fn default_sleep_after() -> Duration {
    Duration::from_secs(600)
}
pub fn default_archive_after() -> Duration {
    Duration::from_secs(48 * 3600)
}
pub fn default_start_timeout() -> Duration {
    Duration::from_secs(300)
}
pub fn default_stop_timeout() -> Duration {
    Duration::from_secs(60)
}
pub fn default_memory_gb() -> f64 {
    4.0
}

/// The API-defined servers as the API reaches them: the binary stores them and applies
/// them to its engine and routes; the API only asks.
#[async_trait::async_trait]
pub trait ServerCatalog: Send + Sync {
    /// Every API-defined server.
    async fn list(&self) -> Result<Vec<ServerSpec>, StoreError>;
    /// One, if it exists.
    async fn get(&self, id: &str) -> Result<Option<ServerSpec>, StoreError>;
    /// Stores `spec` (`create`: only if new) and applies it here at once.
    async fn put(&self, spec: &ServerSpec, create: bool) -> Result<(), StoreError>;
    /// Removes it; whether it existed.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;
}
