//! Archiving a long-asleep server and restoring it on the next join.
//!
//! The node copy is removed only after `warden_archive` has read the stored archive back
//! and verified every file, and a server whose world is in the archive stays `Archived`
//! until a restore has completed: whatever fails, one verified copy of the data exists, and
//! no server is ever started on an empty world.

use tracing::{info, warn};
use warden_archive::{backup, Manifest};
use warden_store::{ArchiveRef, ArchiveUpdate, Change, Recovery, ServerState};

use super::events::Event;
use super::{Engine, LifecycleError, Slot};

/// Archives a sleeping server's world (`why` goes into the transition). The error says
/// what failed; the data is then still on the node.
pub(super) async fn archive(engine: &Engine, slot: &Slot, why: &str) -> Result<(), LifecycleError> {
    let spec = &slot.spec;
    let (Some(store), Some(data)) = (spec.archive.as_ref(), spec.data.as_ref()) else {
        return Err(LifecycleError::Failed(
            "no archive storage, or Warden does not own this server's data".into(),
        ));
    };
    engine.transition(slot, ServerState::Archiving, why).await?;
    let manifest = match data.archive(store.as_ref(), &spec.id).await {
        Ok(m) => m,
        Err(e) => {
            let e = e.during("archive failed, data kept on the node");
            let _ = engine
                .transition(slot, ServerState::Failed, &e.to_string())
                .await;
            return Err(e);
        }
    };
    // Verified: now, and only now, the node copy may go.
    if let Err(e) = data.remove().await {
        let e = e.during("archived, but the node copy could not be removed");
        let _ = engine
            .transition(slot, ServerState::Sleeping, &e.to_string())
            .await;
        return Err(e);
    }
    let change = Change::to(ServerState::Archived, "archived and verified")
        .with_archive(ArchiveUpdate::Set(reference(&spec.id, &manifest)));
    engine.change(slot, change).await?;
    Ok(())
}

/// What the record keeps of a verified archive.
pub(super) fn reference(id: &str, manifest: &Manifest) -> ArchiveRef {
    ArchiveRef {
        location: id.to_string(),
        manifest_sha256: manifest.archive.sha256.clone(),
        bytes: manifest.archive.bytes,
    }
}

/// Whether the server's world is in the archive rather than on the node. Only the state
/// says so: a failed restore goes back to `Archived`, never to a state that would start
/// the server on an empty world.
pub(super) fn is_archived(slot: &Slot) -> bool {
    matches!(
        slot.record.lock().state,
        ServerState::Archived | ServerState::Restoring
    )
}

/// Brings the world back from the archive (or, for a server recovering from its node's
/// death, from its newest verified backup), then moves to `then` (`Starting` when a start
/// follows, `Sleeping` for an operator's restore or a recovery ahead of any join).
pub(super) async fn restore(
    engine: &Engine,
    slot: &Slot,
    why: &str,
    then: ServerState,
) -> Result<(), LifecycleError> {
    let recovery = slot.record.lock().recovery.clone();
    if let Some(r) = recovery {
        let result = recover(engine, slot, &r, then).await;
        if let Err(e) = &result {
            warn!(server = %slot.spec.id, error = %e, "recovery failed; nothing was started");
            *slot.blocked.lock() = Some(format!("its recovery failed: {e}"));
            if *slot.state.borrow() == ServerState::Restoring {
                let _ = engine
                    .transition(
                        slot,
                        ServerState::Archived,
                        &format!("recovery failed: {e}"),
                    )
                    .await;
            }
            slot.state.send_modify(|_| {});
        }
        return result;
    }
    let spec = &slot.spec;
    let (Some(store), Some(data)) = (spec.archive.as_ref(), spec.data.as_ref()) else {
        return Err(LifecycleError::Failed(
            "its world is archived but no archive storage is configured".into(),
        ));
    };
    engine.transition(slot, ServerState::Restoring, why).await?;
    data.restore(store.as_ref(), &spec.id)
        .await
        .map_err(|e| e.during("restore failed, archive kept"))?;
    engine
        .transition(slot, then, "restored and verified")
        .await?;
    Ok(())
}

/// Restores a dead node's server on this node from its newest verified backup (an older
/// one if it does not verify; its archive if it was never backed up), after moving any
/// stale local copy aside. Moves to `then` once the world is in place, and says how old
/// the restored data was when the node died.
async fn recover(
    engine: &Engine,
    slot: &Slot,
    r: &Recovery,
    then: ServerState,
) -> Result<(), LifecycleError> {
    let spec = &slot.spec;
    let (Some(store), Some(data)) = (spec.archive.as_ref(), spec.data.as_ref()) else {
        return Err(LifecycleError::Failed(format!(
            "node {} died and this node has no archive storage to restore {} from",
            r.from_node, spec.id
        )));
    };
    let prefix = backup::prefix_for(&spec.id);
    let backups = backup::list_ids(store.as_ref(), &prefix).await?;
    let archived = slot.record.lock().archive.is_some();
    if backups.is_empty() && !archived {
        return Err(LifecycleError::Failed(format!(
            "no backup or archive of {} exists: its world was only on node {}",
            spec.id, r.from_node
        )));
    }
    engine
        .transition(
            slot,
            ServerState::Restoring,
            &format!("recovering: node {} died", r.from_node),
        )
        .await?;
    if let Some(aside) = data
        .set_aside(store.as_ref(), &spec.id, &r.from_node)
        .await?
    {
        warn!(server = %spec.id, %aside, "a stale copy on this node was set aside for the recovery");
    }
    let (backup_id, age_ms, text) = if backups.is_empty() {
        data.restore(store.as_ref(), &spec.id)
            .await
            .map_err(|e| e.during("recovery from the archive failed, archive kept"))?;
        (
            None,
            None,
            "its archive (it was never backed up)".to_string(),
        )
    } else {
        let restored = data
            .restore_backup(store.as_ref(), &prefix, None)
            .await
            .map_err(|e| e.during("recovery failed, no backup verified"))?;
        let snap = restored.snapshot;
        let age = r.lost_unix_ms.saturating_sub(snap.created_unix_ms);
        let mut text = format!(
            "backup {} (taken {:.0} s before node {} was last seen)",
            snap.id,
            age as f64 / 1000.0,
            r.from_node
        );
        if !restored.skipped.is_empty() {
            let skipped: Vec<&str> = restored.skipped.iter().map(|(id, _)| id.as_str()).collect();
            text = format!(
                "{text}; skipped, failed verification: {}",
                skipped.join(", ")
            );
        }
        (Some(snap.id), Some(age), text)
    };
    let reason = format!("recovered from {text}");
    engine.transition(slot, then, &reason).await?;
    info!(server = %spec.id, dead = %r.from_node, "{reason}");
    engine.count_recovery();
    let _ = engine.events.send(Event::recovered(
        &spec.id,
        engine.appliance(),
        backup_id.as_deref(),
        age_ms,
        &reason,
        super::now_ms(),
    ));
    Ok(())
}
