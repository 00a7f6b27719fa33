//! Finding and reading snapshots: the ids below a prefix, one verified manifest, and the
//! listing operators see (with a cheap "all blobs present" check, or a full read).

use std::collections::BTreeSet;

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use super::id::{id_unix_ms, is_id, order_key};
use super::manifest::{decode, Snapshot, MAX_MANIFEST_BYTES};
use super::{blob, snapshot_key, snapshots_dir};
use crate::error::{ArchiveError, IoContext, Result};
use crate::store::ArchiveStore;

/// Blobs read at once by a full verification.
const PARALLEL: usize = 4;

/// Every snapshot id below `prefix`, oldest first.
pub async fn list_ids<S: ArchiveStore + ?Sized>(store: &S, prefix: &str) -> Result<Vec<String>> {
    let dir = format!("{}/", snapshots_dir(prefix));
    let mut ids: Vec<String> = store
        .list(&snapshots_dir(prefix))
        .await?
        .into_iter()
        .filter_map(|k| {
            k.strip_prefix(&dir)?
                .strip_suffix(".json")
                .filter(|id| is_id(id))
                .map(str::to_string)
        })
        .collect();
    ids.sort_by_key(|id| order_key(id));
    Ok(ids)
}

/// Reads snapshot `id`'s manifest and checks it (its own sha256 and its structure).
pub async fn load<S: ArchiveStore + ?Sized>(store: &S, prefix: &str, id: &str) -> Result<Snapshot> {
    if !is_id(id) {
        return Err(ArchiveError::InvalidKey {
            key: id.to_string(),
            reason: "not a snapshot id (like 20260102T030405Z)".into(),
        });
    }
    let key = snapshot_key(prefix, id);
    let mut bytes = Vec::new();
    store
        .get(&key)
        .await?
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .ctx(|| format!("reading {key}"))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ArchiveError::Manifest {
            key,
            reason: format!("larger than {MAX_MANIFEST_BYTES} bytes"),
        });
    }
    decode(&key, id, &bytes)
}

/// Reads every blob of snapshot `id` and checks its hash: what a restore would find.
pub async fn verify_snapshot<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    id: &str,
) -> Result<Snapshot> {
    let s = load(store, prefix, id).await?;
    let mut unique = BTreeSet::new();
    for e in s.files() {
        for (i, c) in e.chunks.iter().enumerate() {
            unique.insert((c.clone(), s.chunk_len(e.size.unwrap_or(0), i)));
        }
    }
    let mut checks = futures_util::stream::iter(unique)
        .map(|(sha, len)| async move { blob::fetch(store, prefix, &sha, len).await })
        .buffer_unordered(PARALLEL);
    while let Some(r) = checks.next().await {
        r?;
    }
    Ok(s)
}

/// One snapshot as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: String,
    pub created_unix_ms: u64,
    pub note: String,
    pub files: u64,
    /// The world's size.
    pub bytes: u64,
    /// What taking it added to the store (compressed).
    pub new_bytes: u64,
    /// Manifest verified and every blob present (`full`: every blob read and hashed).
    pub verified: bool,
    /// Why not, if not.
    pub problem: Option<String>,
}

/// Every snapshot below `prefix`, newest first. Without `full`, each manifest is read and
/// verified and its blobs' presence checked against one listing; with `full`, every blob
/// is read and hashed (as a restore would).
pub async fn summaries<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    full: bool,
) -> Result<Vec<Summary>> {
    let ids = list_ids(store, prefix).await?;
    let present = if full {
        None
    } else {
        Some(blob::existing(store, prefix).await?)
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids.iter().rev() {
        let loaded = match &present {
            Some(_) => load(store, prefix, id).await,
            None => verify_snapshot(store, prefix, id).await,
        };
        let summary = match loaded {
            Ok(s) => {
                let missing = present
                    .as_ref()
                    .and_then(|p| s.chunks().find(|c| !p.contains(*c)).map(str::to_string));
                Summary {
                    id: s.id.clone(),
                    created_unix_ms: s.created_unix_ms,
                    note: s.note.clone(),
                    files: s.stats.files,
                    bytes: s.stats.bytes,
                    new_bytes: s.stats.new_stored_bytes,
                    verified: missing.is_none(),
                    problem: missing.map(|c| format!("blob {c} is missing")),
                }
            }
            Err(e) => Summary {
                id: id.clone(),
                created_unix_ms: id_unix_ms(id).unwrap_or(0),
                note: String::new(),
                files: 0,
                bytes: 0,
                new_bytes: 0,
                verified: false,
                problem: Some(e.to_string()),
            },
        };
        out.push(summary);
    }
    Ok(out)
}
