//! Servers defined through the control API. Their definitions live in the state store (so
//! they survive restarts and, with Redis, reach every appliance); each appliance hands
//! them to the [`Inventory`] whenever the store changes, which manages and routes them
//! beside the config file's servers as last accepted (the file is not read again). The
//! config file stays the source for its own servers: API servers can neither take a
//! configured id nor a host that is already routed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;
use warden_api::{ServerCatalog, ServerSpec as ApiSpec};
use warden_archive::ArchiveStore;
use warden_lifecycle::{Engine, ManagedServer};
use warden_proxy::route::Server;
use warden_store::{StateStore, StoreError};

use crate::config::{Managed, RuntimeSpec, ServerSpec};
use crate::inventory::{Build, Inventory, Source};
use crate::managed::managed_server;

/// The store's document kind for API-defined servers.
const KIND: &str = "server";
/// How often the store is re-read even without a change notification.
const RESYNC: Duration = Duration::from_secs(10);

/// The server an API definition (the request body, as the store keeps it) defines.
pub fn spec_of(d: &ApiSpec) -> ServerSpec {
    let mut route = Server::new(&d.id, &d.backend);
    route.proxy_protocol = d.proxy_protocol;
    route.accepts_transfers = d.accepts_transfers;
    ServerSpec {
        route,
        hosts: d.hosts.clone(),
        managed: d.runtime.clone().map(|runtime| Managed {
            runtime: RuntimeSpec::Owned(runtime),
            rcon: d.rcon.clone(),
            sleep_after: Duration::from_secs(d.sleep_after_secs),
            archive_after: Duration::from_secs(d.archive_after_secs),
            start_timeout: Duration::from_secs(d.start_timeout_secs),
            stop_timeout: Duration::from_secs(d.stop_timeout_secs),
            memory_gb: d.memory_gb,
            node_backends: d.node_backends.clone(),
            // Every appliance sharing the store reads this definition.
            anywhere: true,
            node_labels: d.node_labels.clone(),
        }),
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

    /// Brings this appliance's engine and routes in line with the store.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let definitions = self.list().await?;
        let _one = self.syncing.lock().await;
        let now: BTreeMap<String, ServerSpec> = definitions
            .iter()
            .map(|d| (d.id.clone(), spec_of(d)))
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
        let fleet = self.engine.fleet();
        managed_server(spec, managed, Some(&self.archive), fleet, None).await
    }
}

#[async_trait::async_trait]
impl ServerCatalog for Catalog {
    async fn list(&self) -> Result<Vec<ApiSpec>, StoreError> {
        let mut out = Vec::new();
        for (id, json) in self.store.list_docs(KIND).await? {
            match serde_json::from_str(&json) {
                Ok(spec) => out.push(spec),
                Err(e) => warn!(server = %id, error = %e, "unreadable server spec in the store"),
            }
        }
        Ok(out)
    }

    async fn get(&self, id: &str) -> Result<Option<ApiSpec>, StoreError> {
        Ok(match self.store.get_doc(KIND, id).await? {
            Some(json) => serde_json::from_str(&json).ok(),
            None => None,
        })
    }

    async fn put(&self, spec: &ApiSpec, create: bool) -> Result<(), StoreError> {
        let json = serde_json::to_string(spec)
            .map_err(|e| StoreError::Invalid(format!("encoding the spec: {e}")))?;
        self.store.put_doc(KIND, &spec.id, &json, create).await?;
        self.sync().await
    }

    /// Deletes the definition, then the server's record (its transitions stay as the
    /// audit trail): what it leaves (data, container, volume, archive, backups) has no
    /// owner from then on, and the collector reclaims it once `[gc] min_age` has passed.
    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let existed = self.store.delete_doc(KIND, id).await?;
        self.sync().await?;
        if existed {
            self.store.delete(id).await?;
        }
        Ok(existed)
    }
}
