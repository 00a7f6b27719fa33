//! Archiving a long-asleep server and restoring it on the next join.
//!
//! The node copy is removed only after `warden_archive` has read the stored archive back
//! and verified every file; a restore extracts beside the target and renames into place
//! only after verification. Whatever fails, one verified copy of the data exists.

use warden_store::{ArchiveRef, ArchiveUpdate, Change, ServerState};

use super::{Engine, Slot};

pub(super) async fn archive(engine: &Engine, slot: &Slot) {
    let spec = &slot.spec;
    let (Some(store), Some(dir)) = (spec.archive.as_ref(), spec.data_dir.as_ref()) else {
        return;
    };
    if engine
        .transition(slot, ServerState::Archiving, "asleep past archive_after")
        .await
        .is_err()
    {
        return;
    }
    let opts = warden_archive::ArchiveOptions::default();
    match warden_archive::archive_dir(store.as_ref(), &spec.id, dir, &opts).await {
        Ok(manifest) => {
            // Verified: now, and only now, the node copy may go.
            if let Err(e) = tokio::fs::remove_dir_all(dir).await {
                let _ = engine
                    .transition(
                        slot,
                        ServerState::Sleeping,
                        &format!("archived, but the node copy could not be removed: {e}"),
                    )
                    .await;
                return;
            }
            let epoch = slot.record.lock().epoch;
            let change = Change::to(ServerState::Archived, "archived and verified").with_archive(
                ArchiveUpdate::Set(ArchiveRef {
                    location: spec.id.clone(),
                    manifest_sha256: manifest.archive.sha256.clone(),
                    bytes: manifest.archive.bytes,
                }),
            );
            let result = engine.store.apply(&spec.id, epoch, change).await;
            let _ = engine.adopt(slot, result);
        }
        Err(e) => {
            let _ = engine
                .transition(
                    slot,
                    ServerState::Failed,
                    &format!("archive failed, data kept on the node: {e}"),
                )
                .await;
        }
    }
}

pub(super) async fn restore(engine: &Engine, slot: &Slot) -> Result<(), String> {
    let spec = &slot.spec;
    let (Some(store), Some(dir)) = (spec.archive.as_ref(), spec.data_dir.as_ref()) else {
        return Err("no archive storage configured".into());
    };
    engine
        .transition(
            slot,
            ServerState::Restoring,
            "player joined an archived server",
        )
        .await
        .map_err(|e| e.to_string())?;
    warden_archive::restore_dir(store.as_ref(), &spec.id, dir)
        .await
        .map_err(|e| format!("restore failed: {e}"))?;
    engine
        .transition(slot, ServerState::Starting, "restored and verified")
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
