//! Reconciling the store with reality when Warden starts.
//!
//! Warden may have been killed at any moment. The store says what it was doing; the
//! runtime and the disk say what is true. The rules only ever move towards a state in
//! which the server can be woken, and never delete data.

use warden_store::{ServerRecord, ServerState, StateStore, StoreError};

use super::{LifecycleSettings, ManagedServer};

pub(super) async fn reconcile(
    spec: &ManagedServer,
    store: &dyn StateStore,
    _s: &LifecycleSettings,
) -> Result<ServerRecord, StoreError> {
    let running = spec.runtime.running().await.unwrap_or(false);
    let record = match store.get(&spec.id).await? {
        Some(r) => r,
        None => {
            let state = if running {
                ServerState::Starting
            } else {
                ServerState::Sleeping
            };
            return store
                .put_new(ServerRecord::new(spec.id.clone(), state, "first seen"))
                .await;
        }
    };
    let data_present = spec.data_dir.as_ref().is_none_or(|d| d.exists());
    let target = match record.state {
        // It was (becoming) active: trust the runtime.
        ServerState::Active | ServerState::Starting | ServerState::Swapping if !running => {
            Some((ServerState::Sleeping, "not running after a restart"))
        }
        ServerState::Sleeping | ServerState::Failed if running => {
            Some((ServerState::Starting, "found running after a restart"))
        }
        ServerState::Stopping if !running => {
            Some((ServerState::Sleeping, "stop completed before a restart"))
        }
        ServerState::Stopping => Some((ServerState::Active, "stop interrupted; still running")),
        // An interrupted archive: the node copy is only deleted after verification, so if
        // it is still here nothing was lost; archiving is simply retried later.
        ServerState::Archiving if data_present => Some((
            ServerState::Sleeping,
            "archive interrupted; data still on the node",
        )),
        ServerState::Archiving if record.archive.is_some() => {
            Some((ServerState::Archived, "archive had completed"))
        }
        // An interrupted restore never touched the archive, and restore_dir cleans its
        // own half-extracted sibling directory.
        ServerState::Restoring if !data_present => {
            Some((ServerState::Archived, "restore interrupted; archive intact"))
        }
        ServerState::Restoring => Some((ServerState::Sleeping, "restore had completed")),
        _ => None,
    };
    match target {
        Some((to, reason)) => {
            tracing::info!(server = %spec.id, from = record.state.as_str(), to = to.as_str(), reason, "reconciled after start");
            store.transition(&spec.id, record.epoch, to, reason).await
        }
        None => Ok(record),
    }
}
