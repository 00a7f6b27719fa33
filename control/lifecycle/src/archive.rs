//! Archiving a long-asleep server and restoring it on the next join.
//!
//! The node copy is removed only after `warden_archive` has read the stored archive back
//! and verified every file, and a server whose world is in the archive stays `Archived`
//! until a restore has completed: whatever fails, one verified copy of the data exists, and
//! no server is ever started on an empty world.

use warden_archive::Manifest;
use warden_store::{ArchiveRef, ArchiveUpdate, Change, ServerState};

use super::{Engine, Slot};

/// Archives a sleeping server's world (`why` goes into the transition). The error says
/// what failed; the data is then still on the node.
pub(super) async fn archive(engine: &Engine, slot: &Slot, why: &str) -> Result<(), String> {
    let spec = &slot.spec;
    let (Some(store), Some(data)) = (spec.archive.as_ref(), spec.data.as_ref()) else {
        return Err("no archive storage, or Warden does not own this server's data".into());
    };
    engine
        .transition(slot, ServerState::Archiving, why)
        .await
        .map_err(|e| e.to_string())?;
    let manifest = match data.archive(store.as_ref(), &spec.id).await {
        Ok(m) => m,
        Err(e) => {
            let why = format!("archive failed, data kept on the node: {e}");
            let _ = engine.transition(slot, ServerState::Failed, &why).await;
            return Err(why);
        }
    };
    // Verified: now, and only now, the node copy may go.
    if let Err(e) = data.remove().await {
        let why = format!("archived, but the node copy could not be removed: {e}");
        let _ = engine.transition(slot, ServerState::Sleeping, &why).await;
        return Err(why);
    }
    let change = Change::to(ServerState::Archived, "archived and verified")
        .with_archive(ArchiveUpdate::Set(reference(&spec.id, &manifest)));
    engine
        .change(slot, change)
        .await
        .map_err(|e| e.to_string())?;
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

/// Brings the world back from the archive, then moves to `then` (`Starting` when a start
/// follows, `Sleeping` for an operator's restore).
pub(super) async fn restore(
    engine: &Engine,
    slot: &Slot,
    why: &str,
    then: ServerState,
) -> Result<(), String> {
    let spec = &slot.spec;
    let (Some(store), Some(data)) = (spec.archive.as_ref(), spec.data.as_ref()) else {
        return Err("its world is archived but no archive storage is configured".into());
    };
    engine
        .transition(slot, ServerState::Restoring, why)
        .await
        .map_err(|e| e.to_string())?;
    data.restore(store.as_ref(), &spec.id)
        .await
        .map_err(|e| format!("restore failed, archive kept: {e}"))?;
    engine
        .transition(slot, then, "restored and verified")
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
