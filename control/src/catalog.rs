//! Servers defined through the control API. Their specs live in the state store (so they
//! survive restarts and, with Redis, reach every appliance); each appliance turns them
//! into managed servers and routes whenever the store changes. The config file stays the
//! source for its own servers: API servers can neither take a configured id nor a host
//! that is already routed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use warden_archive::ArchiveStore;
use warden_proxy::route::Server;
use warden_store::{StateStore, StoreError};

use warden_api::{ServerCatalog, ServerSpec};

use crate::config::Discovered;
use crate::managed::{managed_server, ServerSpecParts};
use crate::reload::Reloader;
use warden_lifecycle::Engine;

/// The store's document kind for API-defined servers.
const KIND: &str = "server";
/// How often the store is re-read even without a change notification.
const RESYNC: Duration = Duration::from_secs(10);

/// The routes of an API-defined server.
fn route(spec: &ServerSpec) -> Discovered {
    let mut server = Server::new(&spec.id, &spec.backend);
    server.proxy_protocol = spec.proxy_protocol;
    server.accepts_transfers = spec.accepts_transfers;
    Discovered {
        server,
        hosts: spec.hosts.clone(),
    }
}

pub struct Catalog {
    store: Arc<dyn StateStore>,
    engine: Arc<Engine>,
    reloader: Reloader,
    archive: Arc<dyn ArchiveStore>,
    /// What was last applied, so a sync only touches what changed.
    /// None until the first sync has routed them.
    applied: tokio::sync::Mutex<Option<BTreeMap<String, ServerSpec>>>,
}

impl Catalog {
    pub fn new(
        store: Arc<dyn StateStore>,
        engine: Arc<Engine>,
        reloader: Reloader,
        archive: Arc<dyn ArchiveStore>,
    ) -> Self {
        Catalog {
            store,
            engine,
            reloader,
            archive,
            applied: Default::default(),
        }
    }

    /// Brings this appliance's engine and routes in line with the store.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let specs = self.list().await?;
        let mut guard = self.applied.lock().await;
        let now: BTreeMap<String, ServerSpec> =
            specs.into_iter().map(|s| (s.id.clone(), s)).collect();
        if guard.as_ref() == Some(&now) {
            // Most store changes are transitions and sessions, not server specs.
            return Ok(());
        }
        let applied = guard.take().unwrap_or_default();
        for id in applied.keys().filter(|id| !now.contains_key(*id)) {
            self.engine.remove(id);
            info!(server = %id, "API server deleted; no longer routed");
        }
        let mut kept = BTreeMap::new();
        for (id, spec) in &now {
            if applied.get(id) == Some(spec) {
                kept.insert(id.clone(), spec.clone());
                continue;
            }
            match self.apply(spec).await {
                Ok(()) => {
                    info!(server = %id, "API server applied");
                    kept.insert(id.clone(), spec.clone());
                }
                Err(e) => warn!(server = %id, error = %e, "API server not applied; retrying"),
            }
        }
        let routes = kept.values().map(route).collect();
        *guard = Some(kept);
        self.reloader.set_dynamic("api", routes);
        Ok(())
    }

    async fn apply(&self, spec: &ServerSpec) -> anyhow::Result<()> {
        let Some(runtime) = &spec.runtime else {
            self.engine.remove(&spec.id);
            return Ok(());
        };
        let parts = ServerSpecParts {
            id: &spec.id,
            backend: &spec.backend,
            proxy_protocol: spec.proxy_protocol,
            runtime,
            rcon: spec.rcon.as_ref(),
            sleep_after: Duration::from_secs(spec.sleep_after_secs),
            archive_after: Duration::from_secs(spec.archive_after_secs),
            start_timeout: Duration::from_secs(spec.start_timeout_secs),
            stop_timeout: Duration::from_secs(spec.stop_timeout_secs),
            memory_gb: spec.memory_gb,
            node_backends: &spec.node_backends,
        };
        let managed = managed_server(&parts, self.archive.clone()).await?;
        self.engine.add(managed).await?;
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
impl ServerCatalog for Catalog {
    async fn list(&self) -> Result<Vec<ServerSpec>, StoreError> {
        let mut out = Vec::new();
        for (id, json) in self.store.list_docs(KIND).await? {
            match serde_json::from_str(&json) {
                Ok(spec) => out.push(spec),
                Err(e) => warn!(server = %id, error = %e, "unreadable server spec in the store"),
            }
        }
        Ok(out)
    }

    async fn get(&self, id: &str) -> Result<Option<ServerSpec>, StoreError> {
        Ok(match self.store.get_doc(KIND, id).await? {
            Some(json) => serde_json::from_str(&json).ok(),
            None => None,
        })
    }

    async fn put(&self, spec: &ServerSpec, create: bool) -> Result<(), StoreError> {
        let json = serde_json::to_string(spec)
            .map_err(|e| StoreError::Invalid(format!("encoding the spec: {e}")))?;
        self.store.put_doc(KIND, &spec.id, &json, create).await?;
        self.sync().await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let existed = self.store.delete_doc(KIND, id).await?;
        self.sync().await?;
        Ok(existed)
    }
}
