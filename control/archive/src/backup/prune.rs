//! Retention and garbage collection in one pass, mark and sweep: delete the manifests the
//! policy does not keep, read and verify every manifest that is kept (the mark), and only
//! if all of them could be read delete the blobs none of them references (the sweep). A
//! manifest that cannot be read is never taken to mean "its blobs are unused".

use std::collections::HashSet;

use super::id::id_unix_ms;
use super::list::{list_ids, load};
use super::retention::Retention;
use super::{blob, snapshot_key};
use crate::error::Result;
use crate::store::ArchiveStore;

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Snapshot ids kept and deleted.
    pub kept: Vec<String>,
    pub deleted: Vec<String>,
    pub blobs_deleted: u64,
    /// Why no blob was deleted although some may be unused.
    pub sweep_skipped: Option<String>,
}

/// Applies `policy` to the snapshots below `prefix` and deletes blobs no kept snapshot
/// references. The caller must be the prefix's only writer while it runs.
pub async fn prune<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    policy: &Retention,
) -> Result<PruneReport> {
    let ids = list_ids(store, prefix).await?;
    let mut loaded = Vec::with_capacity(ids.len());
    let mut dated = Vec::with_capacity(ids.len());
    for id in &ids {
        // dated by the id (the creation second), so a snapshot whose manifest cannot be
        // read is dated like the others
        dated.push((id.clone(), id_unix_ms(id).unwrap_or(u64::MAX)));
        loaded.push((id.clone(), load(store, prefix, id).await));
    }
    let keep = policy.keep(&dated);
    let mut report = PruneReport::default();
    for id in &ids {
        if keep.contains(id) {
            report.kept.push(id.clone());
        } else {
            store.delete(&snapshot_key(prefix, id)).await?;
            report.deleted.push(id.clone());
        }
    }
    // mark: every kept manifest must have been read and verified
    let mut referenced: HashSet<String> = HashSet::new();
    for (id, snap) in &loaded {
        if !keep.contains(id) {
            continue;
        }
        match snap {
            Ok(s) => referenced.extend(s.chunks().map(str::to_string)),
            Err(e) => {
                report.sweep_skipped = Some(format!(
                    "snapshot {id} could not be read ({e}); no blob deleted"
                ));
                tracing::warn!(prefix, snapshot = %id, error = %e, "backup prune: unreadable snapshot kept, blobs not swept");
                return Ok(report);
            }
        }
    }
    // sweep
    for sha in blob::existing(store, prefix).await? {
        if !referenced.contains(&sha) {
            store.delete(&blob::key(prefix, &sha)).await?;
            report.blobs_deleted += 1;
        }
    }
    if !report.deleted.is_empty() || report.blobs_deleted > 0 {
        tracing::info!(
            prefix,
            kept = report.kept.len(),
            deleted = report.deleted.len(),
            blobs_deleted = report.blobs_deleted,
            "backups pruned"
        );
    }
    Ok(report)
}
