//! The collector: finds what no record owns and no rule keeps, reports it, and deletes only
//! what is verifiably unowned and older than a safety age (`[gc] min_age`, default 3 days).
//!
//! Kinds: `archive` (an archive of a server the store has no record of and no appliance
//! here defines), `backup` (the same for a server's backups: while a record exists its
//! retention policy decides), `aside` (a stale world set aside by a recovery, beside the
//! data directory or as `backups/ID.stale`), `temp` (what an interrupted restore or
//! deletion left beside a data directory: `.NAME.warden-removing`, `NAME.restoring-*`),
//! `upload` (a multipart upload to S3 that was never completed: its parts are billed),
//! `container` and `volume` (Docker ones this fleet made, labelled `warden.fleet`, for a
//! server the store has no record of; a running container is never touched).
//! Nothing is decided without the store: if it cannot be read, or it knows no server at
//! all while archives or containers exist (a store that lost its data), nothing is deleted.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};
use warden_archive::ArchiveStore;
use warden_runtime::docker::leftovers;

use super::{now_ms, Engine, LifecycleError, ServerData};

/// The safety age by default: three days.
pub const MIN_AGE: Duration = Duration::from_secs(3 * 86_400);

/// Every kind, for the metrics.
const KINDS: [&str; 7] = [
    "archive",
    "backup",
    "aside",
    "temp",
    "upload",
    "container",
    "volume",
];

/// The refusal when the store looks like it lost its data.
fn store_lost(what: &str) -> LifecycleError {
    LifecycleError::Refused(format!(
        "the store knows no server while {what}: nothing is collected (a store that lost its data?)"
    ))
}

/// One thing nothing owns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Orphan {
    /// `archive`, `backup`, `aside`, `temp`, `upload`, `container` or `volume`.
    pub kind: &'static str,
    /// The storage key or the path.
    pub what: String,
    pub bytes: u64,
    /// Age in seconds, if known (an object whose age is unknown is never deleted).
    pub age_secs: Option<u64>,
    pub deleted: bool,
    /// Why it was kept, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
}

/// What a collection found and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GcReport {
    pub orphans: Vec<Orphan>,
    pub deleted: usize,
    pub bytes_deleted: u64,
    pub dry_run: bool,
}

/// Which owner an archive key belongs to, and its kind, for the shapes Warden writes and
/// nothing else (a bucket may hold other things): `ID/data.tar.zst` and `ID/manifest.json`
/// are an archive, `backups/ID/{snapshots,blobs}/...` backups, `backups/ID.stale/...` a
/// set-aside world.
fn owner_of(key: &str) -> Option<(&'static str, &str)> {
    use warden_archive::manifest::{DATA_OBJECT, MANIFEST_OBJECT};
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["backups", id, "snapshots" | "blobs", _, ..] => match id.strip_suffix(".stale") {
            Some(_) => Some(("aside", id)),
            None => Some(("backup", id)),
        },
        [id, object] if *object == DATA_OBJECT || *object == MANIFEST_OBJECT => {
            Some(("archive", id))
        }
        _ => None,
    }
}

impl Engine {
    /// Counts deletions in `warden_gc_deleted_total{kind}` and the last run's orphans in
    /// `warden_gc_orphans{kind}` from now on.
    pub fn count_gc(&self, deleted: prometheus::IntCounterVec, orphans: prometheus::IntGaugeVec) {
        let _ = self.gc_metrics.set((deleted, orphans));
    }

    /// Finds orphans and, unless `dry_run`, deletes those older than the safety age.
    pub async fn gc(&self, dry_run: bool) -> Result<GcReport, LifecycleError> {
        let min_age_ms = self.settings.gc_min_age.as_millis() as u64;
        // Owners: every record in the store, and every server this appliance defines.
        let mut owned: HashSet<String> =
            self.store.list().await?.into_iter().map(|r| r.id).collect();
        let known_to_store = owned.len();
        let slots: Vec<Arc<super::Slot>> = self.slots.read().values().cloned().collect();
        owned.extend(slots.iter().map(|s| s.spec.id.clone()));
        let mut report = GcReport {
            dry_run,
            ..Default::default()
        };
        // The archive stores these servers use (usually one).
        let mut stores: Vec<Arc<dyn ArchiveStore>> = Vec::new();
        for s in &slots {
            if let Some(a) = &s.spec.archive {
                if !stores.iter().any(|b| Arc::ptr_eq(a, b)) {
                    stores.push(a.clone());
                }
            }
        }
        let now = now_ms();
        for store in &stores {
            let keys = store.list("").await?;
            if known_to_store == 0 && !keys.is_empty() {
                return Err(store_lost("the archive storage holds data"));
            }
            for key in keys {
                let Some((kind, id)) = owner_of(&key) else {
                    continue;
                };
                if kind != "aside" && owned.contains(id) {
                    continue;
                }
                let meta = store.head(&key).await?;
                let (bytes, modified) = meta.map_or((0, None), |m| (m.bytes, m.modified_unix_ms));
                let age = modified.map(|m| now.saturating_sub(m));
                let mut o = Orphan {
                    kind,
                    what: key.clone(),
                    bytes,
                    age_secs: age.map(|a| a / 1000),
                    deleted: false,
                    kept: None,
                };
                o.kept = keep(age, min_age_ms, dry_run);
                if o.kept.is_none() {
                    store.delete(&key).await?;
                    o.deleted = true;
                }
                report.orphans.push(o);
            }
        }
        for store in &stores {
            // Whoever owns the server, an upload older than the safety age was abandoned
            // (a process killed mid-upload): only its parts remain, and they are billed.
            for upload in store.unfinished_uploads("").await? {
                if owner_of(&upload.key).is_none() {
                    continue;
                }
                let age = upload.started_unix_ms.map(|m| now.saturating_sub(m));
                let mut o = Orphan {
                    kind: "upload",
                    what: format!("{} (upload {})", upload.key, upload.id),
                    bytes: 0,
                    age_secs: age.map(|a| a / 1000),
                    deleted: false,
                    kept: keep(age, min_age_ms, dry_run),
                };
                if o.kept.is_none() {
                    store.abort_upload(&upload).await?;
                    o.deleted = true;
                }
                report.orphans.push(o);
            }
        }
        let daemons = self.daemons.lock().clone();
        let fleet = self.settings.fleet.as_str();
        for daemon in daemons.iter().filter(|_| !fleet.is_empty()) {
            let made = match leftovers::made_by(daemon, fleet).await {
                Ok(m) => m,
                Err(e) => {
                    warn!(daemon = daemon.endpoint(), error = %e, "docker not collected");
                    continue;
                }
            };
            if known_to_store == 0 && !made.is_empty() {
                return Err(store_lost(
                    "Docker holds containers or volumes this fleet made",
                ));
            }
            // Sorted containers first: a volume is free only once its container is gone.
            for m in made {
                let Some(server) = m.server.as_deref() else {
                    continue;
                };
                if owned.contains(server) {
                    continue;
                }
                let age = m.created_unix_ms.map(|c| now.saturating_sub(c));
                let mut o = Orphan {
                    kind: m.kind,
                    what: format!("{} {} (server {server})", m.kind, m.name),
                    bytes: 0,
                    age_secs: age.map(|a| a / 1000),
                    deleted: false,
                    kept: match m.running {
                        true => Some("running".into()),
                        false => keep(age, min_age_ms, dry_run),
                    },
                };
                if o.kept.is_none() {
                    match leftovers::remove(daemon, &m).await {
                        Ok(()) => o.deleted = true,
                        Err(e) => o.kept = Some(format!("could not delete: {e}")),
                    }
                }
                report.orphans.push(o);
            }
        }
        for slot in &slots {
            let Some(ServerData::Dir(dir)) = &slot.spec.data else {
                continue;
            };
            // A restore in progress owns its staging directory.
            let Ok(_busy) = slot.waking.try_lock() else {
                continue;
            };
            for (kind, path) in leftovers(dir) {
                let meta = std::fs::metadata(&path).ok();
                let age = meta
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| now.saturating_sub(d.as_millis() as u64));
                let mut o = Orphan {
                    kind,
                    what: path.display().to_string(),
                    bytes: dir_bytes(&path),
                    age_secs: age.map(|a| a / 1000),
                    deleted: false,
                    kept: None,
                };
                o.kept = keep(age, min_age_ms, dry_run);
                if o.kept.is_none() {
                    match tokio::fs::remove_dir_all(&path).await {
                        Ok(()) => o.deleted = true,
                        Err(e) => o.kept = Some(format!("could not delete: {e}")),
                    }
                }
                report.orphans.push(o);
            }
        }
        let mut by_kind: BTreeMap<&'static str, i64> = BTreeMap::new();
        for o in &report.orphans {
            *by_kind.entry(o.kind).or_default() += 1;
            if o.deleted {
                report.deleted += 1;
                report.bytes_deleted += o.bytes;
                info!(kind = o.kind, what = %o.what, bytes = o.bytes, "collected an orphan");
            }
        }
        if let Some((deleted, orphans)) = self.gc_metrics.get() {
            for kind in KINDS {
                orphans
                    .with_label_values(&[kind])
                    .set(by_kind.get(kind).copied().unwrap_or(0));
            }
            for o in report.orphans.iter().filter(|o| o.deleted) {
                deleted.with_label_values(&[o.kind]).inc();
            }
        }
        Ok(report)
    }

    /// The nightly collection (after the nightly consolidation, by the appliance that
    /// claimed the night).
    pub(super) async fn nightly_gc(&self) {
        match self.gc(false).await {
            Ok(r) => info!(
                orphans = r.orphans.len(),
                deleted = r.deleted,
                bytes = r.bytes_deleted,
                "nightly collection"
            ),
            Err(e) => warn!(error = %e, "nightly collection skipped"),
        }
    }
}

/// Why an orphan of `age_ms` (None: unknown) is kept; None: it is deleted.
fn keep(age_ms: Option<u64>, min_age_ms: u64, dry_run: bool) -> Option<String> {
    match (age_ms, dry_run) {
        (None, _) => Some("its age is unknown".into()),
        (Some(a), _) if a < min_age_ms => Some("younger than min_age".into()),
        (_, true) => Some("dry run".into()),
        (_, false) => None,
    }
}

/// What interrupted work left beside the data directory `dir`: set-aside worlds (`aside`)
/// and the leftovers of a deletion or a restore (`temp`).
fn leftovers(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let stale = format!(".{name}.stale-");
    let removing = format!(".{name}.warden-removing");
    let restoring = format!("{name}.restoring-");
    let mut out = Vec::new();
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let kind = if file.starts_with(&stale) {
            "aside"
        } else if file == removing || file.starts_with(&restoring) {
            "temp"
        } else {
            continue;
        };
        out.push((kind, e.path()));
    }
    out.sort();
    out
}

/// Bytes below `path` (best effort).
fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else {
            total += m.len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_owner_and_kind() {
        assert_eq!(owner_of("lobby/data.tar.zst"), Some(("archive", "lobby")));
        assert_eq!(
            owner_of("backups/lobby/snapshots/x.json"),
            Some(("backup", "lobby"))
        );
        assert_eq!(
            owner_of("backups/lobby.stale/blobs/ab/cd"),
            Some(("aside", "lobby.stale"))
        );
        assert_eq!(owner_of("lobby/manifest.json"), Some(("archive", "lobby")));
        // Not a shape Warden writes: never its to collect.
        for foreign in [
            "loose-file",
            "photos/cat.jpg",
            "lobby/extra/data.tar.zst",
            "backups/x/notes.txt",
        ] {
            assert_eq!(owner_of(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn leftovers_are_only_this_servers_own() {
        let root = tempfile::tempdir().unwrap();
        let world = root.path().join("world");
        for d in [
            "world",
            ".world.stale-123",
            ".world.warden-removing",
            "world.restoring-abc",
            ".other.stale-1",
            "worldly",
        ] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        let found: Vec<(&str, String)> = leftovers(&world)
            .into_iter()
            .map(|(k, p)| (k, p.file_name().unwrap().to_string_lossy().into_owned()))
            .collect();
        assert_eq!(
            found,
            vec![
                ("aside", ".world.stale-123".to_string()),
                ("temp", ".world.warden-removing".to_string()),
                ("temp", "world.restoring-abc".to_string()),
            ]
        );
    }
}
