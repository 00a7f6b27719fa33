//! Servers defined through the control API. Their definitions live in the state store (so
//! they survive restarts and, with Redis, reach every appliance); each appliance hands
//! them to the [`Inventory`] whenever the store changes, which manages and routes them
//! beside the config file's servers as last accepted (the file is not read again). The
//! config file stays the source for its own servers: API servers can neither take a
//! configured id nor a host that is already routed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::warn;
use utoipa::ToSchema;
use warden_archive::ArchiveStore;
use warden_proxy::route::Server;
use warden_proxy::wire::normalize_host;
use warden_store::{StateStore, StoreError};

use crate::config::{self, Managed, RconConfig, RuntimeConfig, RuntimeSpec, ServerSpec};
use crate::inventory::{Build, Inventory, Source};
use crate::lifecycle::{Engine, ManagedServer};
use crate::managed::managed_server;

/// The store's document kind for API-defined servers.
const KIND: &str = "server";
/// How often the store is re-read even without a change notification.
const RESYNC: Duration = Duration::from_secs(10);

// The request body and what the store keeps; `to_spec` makes it the inventory's
// `ServerSpec` (the doc comment below is the OpenAPI description, kept as it was).
/// A server as the API creates it. Durations are in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ServerSpec)]
pub struct ServerDefinition {
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
    #[serde(default = "config::default_memory_gb")]
    #[schema(minimum = 0.1, maximum = 4096)]
    pub memory_gb: f64,
    #[serde(default)]
    pub proxy_protocol: bool,
    #[serde(default)]
    pub accepts_transfers: bool,
    /// The server's `ip:port` on each appliance (by name), for placement and migration.
    #[serde(default)]
    pub node_backends: BTreeMap<String, String>,
}

fn default_sleep_after_secs() -> u64 {
    config::default_sleep_after().as_secs()
}
fn default_archive_after_secs() -> u64 {
    config::default_archive_after().as_secs()
}
fn default_start_timeout_secs() -> u64 {
    config::default_start_timeout().as_secs()
}
fn default_stop_timeout_secs() -> u64 {
    config::default_stop_timeout().as_secs()
}

impl ServerDefinition {
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

    /// The server this defines.
    pub fn to_spec(&self) -> ServerSpec {
        let mut route = Server::new(&self.id, &self.backend);
        route.proxy_protocol = self.proxy_protocol;
        route.accepts_transfers = self.accepts_transfers;
        ServerSpec {
            route,
            hosts: self.hosts.clone(),
            managed: self.runtime.clone().map(|runtime| Managed {
                runtime: RuntimeSpec::Owned(runtime),
                rcon: self.rcon.clone(),
                sleep_after: Duration::from_secs(self.sleep_after_secs),
                archive_after: Duration::from_secs(self.archive_after_secs),
                start_timeout: Duration::from_secs(self.start_timeout_secs),
                stop_timeout: Duration::from_secs(self.stop_timeout_secs),
                memory_gb: self.memory_gb,
                node_backends: self.node_backends.clone(),
            }),
        }
    }
}

pub struct Catalog {
    store: Arc<dyn StateStore>,
    engine: Arc<Engine>,
    inventory: Arc<Inventory>,
    archive: Arc<dyn ArchiveStore>,
    /// One sync at a time: each hands the inventory the whole set.
    syncing: tokio::sync::Mutex<()>,
}

impl Catalog {
    pub fn new(
        store: Arc<dyn StateStore>,
        engine: Arc<Engine>,
        inventory: Arc<Inventory>,
        archive: Arc<dyn ArchiveStore>,
    ) -> Self {
        Catalog {
            store,
            engine,
            inventory,
            archive,
            syncing: Default::default(),
        }
    }

    pub async fn list(&self) -> Result<Vec<ServerDefinition>, StoreError> {
        let mut out = Vec::new();
        for (id, json) in self.store.list_docs(KIND).await? {
            match serde_json::from_str(&json) {
                Ok(spec) => out.push(spec),
                Err(e) => warn!(server = %id, error = %e, "unreadable server spec in the store"),
            }
        }
        Ok(out)
    }

    pub async fn get(&self, id: &str) -> Result<Option<ServerDefinition>, StoreError> {
        Ok(match self.store.get_doc(KIND, id).await? {
            Some(json) => serde_json::from_str(&json).ok(),
            None => None,
        })
    }

    /// Stores `spec` (`create`: only if new) and applies it here at once.
    pub async fn put(&self, spec: &ServerDefinition, create: bool) -> Result<(), StoreError> {
        let json = serde_json::to_string(spec)
            .map_err(|e| StoreError::Invalid(format!("encoding the spec: {e}")))?;
        self.store.put_doc(KIND, &spec.id, &json, create).await?;
        self.sync().await
    }

    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let existed = self.store.delete_doc(KIND, id).await?;
        self.sync().await?;
        Ok(existed)
    }

    /// Brings this appliance's engine and routes in line with the store.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let definitions = self.list().await?;
        let _one = self.syncing.lock().await;
        let now: BTreeMap<String, ServerSpec> = definitions
            .iter()
            .map(|d| (d.id.clone(), d.to_spec()))
            .collect();
        // A server that could not be applied is retried by the next sync.
        self.inventory
            .apply(&self.engine, Source::Api, &now, self)
            .await;
        Ok(())
    }

    /// Follows the store: other appliances' API writes arrive here.
    pub async fn run(self: Arc<Self>) {
        let mut changes = self.store.watch();
        loop {
            if let Err(e) = self.sync().await {
                warn!(error = %e, "API servers not synced; retrying");
            }
            let _ = tokio::time::timeout(RESYNC, changes.changed()).await;
        }
    }
}

#[async_trait::async_trait]
impl Build for Catalog {
    async fn build(&self, spec: &ServerSpec, managed: &Managed) -> anyhow::Result<ManagedServer> {
        managed_server(spec, managed, Some(&self.archive), None).await
    }
}
