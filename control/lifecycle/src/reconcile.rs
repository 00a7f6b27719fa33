//! Reconciling the store with reality when Warden starts.
//!
//! Warden may have been killed at any moment. The store says what it was doing; the
//! runtime and the disk say what is true. The rules only ever move towards a state in
//! which the server can be woken, and never delete data. Only the owner reconciles: the
//! record is loaded (or created, with its owner) by the engine before it comes here.

use warden_store::{ArchiveUpdate, Change, ServerRecord, ServerState, StateStore, StoreError};

use super::{LifecycleSettings, ManagedServer};

pub(super) async fn reconcile(
    spec: &ManagedServer,
    store: &dyn StateStore,
    settings: &LifecycleSettings,
    record: ServerRecord,
    running: bool,
) -> Result<ServerRecord, StoreError> {
    // Owned by another appliance: what runs (or not) here says nothing about it.
    if record
        .node
        .as_ref()
        .is_some_and(|n| *n != settings.appliance)
    {
        return Ok(record);
    }
    let present = match &spec.data {
        Some(d) => d.present().await,
        None => Ok(true),
    };
    let target = match (record.state, present) {
        // It was (becoming) active: trust the runtime.
        (ServerState::Active | ServerState::Starting | ServerState::Swapping, _) if !running => {
            Some(Change::to(
                ServerState::Sleeping,
                "not running after a restart",
            ))
        }
        (ServerState::Sleeping | ServerState::Failed, _) if running => Some(Change::to(
            ServerState::Starting,
            "found running after a restart",
        )),
        // A warm swap was cut short with the server up: it only needs to be seen ready.
        (ServerState::Swapping, _) => Some(Change::to(
            ServerState::Starting,
            "warm swap interrupted; still running",
        )),
        (ServerState::Stopping, _) if !running => Some(Change::to(
            ServerState::Sleeping,
            "stop completed before a restart",
        )),
        (ServerState::Stopping, _) => Some(Change::to(
            ServerState::Active,
            "stop interrupted; still running",
        )),
        // Cannot see the data (daemon down): change nothing, decide on the next start.
        (ServerState::Archiving | ServerState::Restoring, Err(e)) => {
            tracing::warn!(server = %spec.id, error = %e, "cannot check the server's data; left as it was");
            None
        }
        // An interrupted archive: the node copy is only deleted after verification, so if
        // it is still here nothing was lost; archiving is simply retried later.
        (ServerState::Archiving, Ok(true)) => Some(Change::to(
            ServerState::Sleeping,
            "archive interrupted; data still on the node",
        )),
        // Gone from the node means it was deleted after verification; the storage says so.
        (ServerState::Archiving, Ok(false)) => Some(archived_or_failed(spec).await),
        // A directory restore is renamed into place only when complete.
        (ServerState::Restoring, Ok(true))
            if spec.data.as_ref().is_some_and(|d| d.restore_is_atomic()) =>
        {
            Some(Change::to(ServerState::Sleeping, "restore had completed"))
        }
        // Anything else a restore left is partial; the archive is intact and the next
        // wake restores again from scratch.
        (ServerState::Restoring, _) => Some(Change::to(
            ServerState::Archived,
            "restore interrupted; archive intact",
        )),
        _ => None,
    };
    match target {
        Some(change) => {
            tracing::info!(server = %spec.id, from = record.state.as_str(), to = change.to.as_str(), reason = %change.reason, "reconciled after start");
            let change = match record.node.is_some() {
                true => change.fenced_by(settings.appliance.clone()),
                false => change,
            };
            store.apply(&spec.id, record.epoch, change).await
        }
        None => Ok(record),
    }
}

/// An archive whose node copy is gone: archived if the storage holds a verified copy,
/// failed (with nothing deleted) if it does not.
async fn archived_or_failed(spec: &ManagedServer) -> Change {
    let Some(store) = &spec.archive else {
        return Change::to(
            ServerState::Failed,
            "data missing on the node and no archive storage configured",
        );
    };
    match warden_archive::verify(store.as_ref(), &spec.id).await {
        Ok(manifest) => Change::to(ServerState::Archived, "archive had completed (verified)")
            .with_archive(ArchiveUpdate::Set(super::archive::reference(
                &spec.id, &manifest,
            ))),
        Err(e) => Change::to(
            ServerState::Failed,
            format!("data missing on the node and the archive does not verify: {e}"),
        ),
    }
}
