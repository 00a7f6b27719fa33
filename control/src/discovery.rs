//! Docker label discovery: a container labelled `warden.host=mc.example.org` becomes a
//! routed, sleeping-and-waking server without a config entry, and disappears with its
//! container.
//!
//! The daemons are listed every `discovery.interval` (a listing is one cheap API call, and
//! a poll needs no resynchronisation after a daemon restart or a missed event). Adopted
//! containers are started and stopped but never recreated, archived or deleted: Warden
//! does not own their spec or their data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;
use warden_proxy::route::Server;
use warden_runtime::docker::{discover, DiscoveredServer, DockerClient, DEFAULT_CALL_LIMIT};
use warden_runtime::DockerEndpoint;

use crate::config::{self, Managed, RuntimeSpec, ServerSpec};
use crate::inventory::{Build, Inventory, Source};
use crate::managed::managed_server;
use warden_lifecycle::{Engine, ManagedServer};

/// Minecraft's default port, for containers without `warden.port`.
const DEFAULT_PORT: u16 = 25565;

pub struct Discovery {
    pub daemons: Vec<String>,
    pub interval: Duration,
    pub engine: Arc<Engine>,
    pub inventory: Arc<Inventory>,
    /// Ids the config file already uses; a container may not take one over.
    pub configured: Vec<String>,
}

impl Discovery {
    pub async fn run(self) {
        let mut clients: Vec<Option<DockerClient>> = vec![None; self.daemons.len()];
        // What each daemon showed last, so a daemon that fails to answer keeps its servers.
        let mut last: Vec<BTreeMap<String, DiscoveredServer>> =
            vec![BTreeMap::new(); self.daemons.len()];
        let mut routed: BTreeMap<String, (DiscoveredServer, usize)> = BTreeMap::new();
        let mut tick = tokio::time::interval(self.interval);
        loop {
            tick.tick().await;
            for (i, socket) in self.daemons.iter().enumerate() {
                match self.list(&mut clients[i], socket).await {
                    Ok(found) => {
                        last[i] = found
                            .into_iter()
                            .filter(|d| !self.configured.contains(&d.container))
                            .map(|d| (d.container.clone(), d))
                            .collect()
                    }
                    Err(e) => {
                        warn!(daemon = %socket, error = %e, "discovery: listing containers failed; keeping what it showed last")
                    }
                }
            }
            let mut now: BTreeMap<String, (DiscoveredServer, usize)> = BTreeMap::new();
            for (i, found) in last.iter().enumerate() {
                for (id, d) in found {
                    now.entry(id.clone()).or_insert((d.clone(), i));
                }
            }
            if self.apply(&routed, &now, &clients).await {
                routed = now;
            }
        }
    }

    async fn list(
        &self,
        client: &mut Option<DockerClient>,
        socket: &str,
    ) -> Result<Vec<DiscoveredServer>, warden_runtime::RuntimeError> {
        if client.is_none() {
            let endpoint = DockerEndpoint::Socket(socket.to_string());
            *client = Some(DockerClient::connect(&endpoint, DEFAULT_CALL_LIMIT).await?);
        }
        match client {
            Some(c) => discover(c).await,
            None => Ok(Vec::new()),
        }
    }

    /// Brings the engine and the routing table from `before` to `now`. Returns false (and
    /// is retried next tick) if the store could not take a new server.
    async fn apply(
        &self,
        before: &BTreeMap<String, (DiscoveredServer, usize)>,
        now: &BTreeMap<String, (DiscoveredServer, usize)>,
        clients: &[Option<DockerClient>],
    ) -> bool {
        // `running` flips with every start and stop; only the labels define the server.
        let same = |a: &DiscoveredServer, b: &DiscoveredServer| defined(a) == defined(b);
        let changed = before.len() != now.len()
            || now
                .iter()
                .any(|(id, (d, _))| before.get(id).is_none_or(|(b, _)| !same(b, d)));
        if !changed {
            return true;
        }
        let mut specs = BTreeMap::new();
        for (id, (d, _)) in now {
            match spec(d) {
                Ok(spec) => {
                    specs.insert(id.clone(), spec);
                }
                Err(e) => warn!(server = %id, error = %e, "discovered container ignored"),
            }
        }
        let adopt = Adopt { clients, now };
        self.inventory
            .apply(&self.engine, Source::Docker, &specs, &adopt)
            .await
    }
}

/// A container's definition: what it was found with, less its `running` state.
fn defined(d: &DiscoveredServer) -> DiscoveredServer {
    DiscoveredServer {
        running: false,
        ..d.clone()
    }
}

/// The server a labelled container defines.
fn spec(d: &DiscoveredServer) -> Result<ServerSpec, String> {
    let sleep_after = match &d.sleep_after {
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| format!("label warden.sleep_after = {text:?}: {e}"))?,
        None => config::default_sleep_after(),
    };
    Ok(ServerSpec {
        route: Server::new(&d.container, &backend(d)),
        hosts: vec![d.host.clone()],
        managed: Some(Managed {
            runtime: RuntimeSpec::Adopted(defined(d)),
            rcon: None,
            sleep_after,
            archive_after: config::default_archive_after(),
            start_timeout: config::default_start_timeout(),
            stop_timeout: config::default_stop_timeout(),
            memory_gb: d.memory_gb.unwrap_or_else(config::default_memory_gb),
            node_backends: Default::default(),
            // Only the appliance watching this daemon can run it.
            anywhere: false,
            node_labels: Default::default(),
        }),
    })
}

/// Adopts containers through the client of the daemon each was found on.
struct Adopt<'a> {
    clients: &'a [Option<DockerClient>],
    now: &'a BTreeMap<String, (DiscoveredServer, usize)>,
}

#[async_trait::async_trait]
impl Build for Adopt<'_> {
    async fn build(&self, spec: &ServerSpec, managed: &Managed) -> anyhow::Result<ManagedServer> {
        let client = self
            .now
            .get(spec.id())
            .and_then(|(_, daemon)| self.clients.get(*daemon).cloned().flatten());
        managed_server(spec, managed, None, None, client).await
    }
}

/// Containers use host networking, so the server listens on the node itself.
fn backend(d: &DiscoveredServer) -> String {
    format!("127.0.0.1:{}", d.port.unwrap_or(DEFAULT_PORT))
}
