//! A server's world, wherever it lives: a directory on this node (process runtime) or a
//! Docker volume streamed through the daemon (docker runtime).
//!
//! The archive and restore steps are the same for both; only how the bytes leave and
//! return differs. Every operation keeps the rule of the archive module: the node copy is
//! removed only after a verified copy exists elsewhere, and a restore never lets a server
//! start on a half-written world.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warden_archive::backup::{self, BackupOptions, Restored, Snapshot};
use warden_archive::{ArchiveOptions, ArchiveStore, Manifest};
use warden_runtime::DockerRuntime;

use crate::LifecycleError;

pub enum ServerData {
    Dir(PathBuf),
    Volume(Arc<DockerRuntime>),
}

impl ServerData {
    /// Whether the world is on the node. An error means "cannot tell" (daemon down).
    pub async fn present(&self) -> Result<bool, LifecycleError> {
        match self {
            Self::Dir(d) => Ok(d.exists()),
            Self::Volume(rt) => Ok(rt.has_data().await?),
        }
    }

    /// Streams the world into `store` under `prefix`; returns once the stored archive was
    /// read back and verified.
    pub async fn archive(
        &self,
        store: &dyn ArchiveStore,
        prefix: &str,
    ) -> Result<Manifest, LifecycleError> {
        let opts = ArchiveOptions::default();
        match self {
            Self::Dir(d) => warden_archive::archive_dir(store, prefix, d, &opts).await,
            Self::Volume(rt) => {
                let tar = rt
                    .export_data()
                    .await
                    .map_err(|e| LifecycleError::from(e).during("exporting the volume"))?;
                warden_archive::archive_tar(store, prefix, tar, &opts).await
            }
        }
        .map_err(LifecycleError::from)
    }

    /// Deletes the node copy. Call only after [`ServerData::archive`] succeeded.
    pub async fn remove(&self) -> Result<(), LifecycleError> {
        match self {
            Self::Dir(d) => Ok(remove_dir(d).await?),
            Self::Volume(rt) => Ok(rt.remove_data().await?),
        }
    }

    /// Brings the world back from `store`, verified against its manifest before the server
    /// may use it.
    pub async fn restore(
        &self,
        store: &dyn ArchiveStore,
        prefix: &str,
    ) -> Result<(), LifecycleError> {
        match self {
            // Extracts beside the target and renames into place: atomic on the node.
            Self::Dir(d) => warden_archive::restore_dir(store, prefix, d)
                .await
                .map(drop)
                .map_err(LifecycleError::from),
            Self::Volume(rt) => {
                // A volume cannot be swapped in atomically, so a restore always starts from
                // an empty one: whatever an interrupted restore left is a partial copy of
                // the archive, which is still intact.
                rt.remove_data()
                    .await
                    .map_err(|e| LifecycleError::from(e).during("clearing the volume"))?;
                let tar = warden_archive::restore_tar_stream(store, prefix, None).await?;
                rt.import_data(tar)
                    .await
                    .map_err(|e| LifecycleError::from(e).during("importing into the volume"))
            }
        }
    }

    /// Takes a backup snapshot of the world below `prefix` (see `crate::backup`); Ok once
    /// its new blobs and manifest were read back and verified. A volume is copied only
    /// while its container is stopped.
    pub async fn backup(
        &self,
        store: &dyn ArchiveStore,
        prefix: &str,
        opts: &BackupOptions,
    ) -> Result<Snapshot, LifecycleError> {
        match self {
            Self::Dir(d) => backup::backup_dir(store, prefix, d, opts).await,
            Self::Volume(rt) => {
                let tar = rt
                    .export_data()
                    .await
                    .map_err(|e| LifecycleError::from(e).during("exporting the volume"))?;
                backup::backup_tar(store, prefix, tar, opts).await
            }
        }
        .map_err(LifecycleError::from)
    }

    /// Replaces the world with backup `from` (None: the newest), or the next older one
    /// that verifies. Nothing is changed unless a backup verified completely; a directory
    /// is swapped in atomically, a volume is emptied and refilled from the verified copy.
    pub async fn restore_backup(
        &self,
        store: &dyn ArchiveStore,
        prefix: &str,
        from: Option<&str>,
    ) -> Result<Restored, LifecycleError> {
        match self {
            Self::Dir(d) => Ok(backup::restore_with_fallback(store, prefix, from, d).await?),
            Self::Volume(rt) => {
                let r = backup::restore_tar_with_fallback(store, prefix, from, None).await?;
                rt.remove_data()
                    .await
                    .map_err(|e| LifecycleError::from(e).during("clearing the volume"))?;
                rt.import_data(r.data)
                    .await
                    .map_err(|e| LifecycleError::from(e).during("importing into the volume"))?;
                Ok(Restored {
                    snapshot: r.snapshot,
                    skipped: r.skipped,
                    data: (),
                })
            }
        }
    }

    /// Moves a world that is on this node out of the way of a recovery (`from_node` died
    /// and its newest backup is about to be restored here): a directory is renamed beside
    /// itself (`.NAME.stale-<unix ms>`, left for an operator or the collector); a volume's
    /// contents are backed up, verified, under `backups/ID.stale` first. Says where it
    /// went; None if nothing was there.
    pub async fn set_aside(
        &self,
        store: &dyn ArchiveStore,
        id: &str,
        from_node: &str,
    ) -> Result<Option<String>, LifecycleError> {
        if !self.present().await? {
            return Ok(None);
        }
        match self {
            Self::Dir(d) => {
                let name = d
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "data".into());
                let aside = d.with_file_name(format!(".{name}.stale-{}", crate::now_ms()));
                tokio::fs::rename(d, &aside).await?;
                Ok(Some(aside.display().to_string()))
            }
            Self::Volume(_) => {
                let prefix = backup::prefix_for(&format!("{id}.stale"));
                let opts = BackupOptions::new(
                    id.to_string(),
                    format!("set aside: recovering after {from_node} died"),
                );
                let s = self.backup(store, &prefix, &opts).await?;
                Ok(Some(format!("{prefix} backup {}", s.id)))
            }
        }
    }

    /// Whether an interrupted restore may have left a partial world that looks present.
    /// Directory restores are atomic; volume restores are not.
    pub fn restore_is_atomic(&self) -> bool {
        matches!(self, Self::Dir(_))
    }
}

/// Renames the directory out of the way first, so a kill during the (slow) deletion never
/// leaves a half-deleted world under the server's path for the next start to use.
async fn remove_dir(dir: &Path) -> std::io::Result<()> {
    let doomed = doomed_path(dir);
    if tokio::fs::try_exists(&doomed).await? {
        tokio::fs::remove_dir_all(&doomed).await?;
    }
    tokio::fs::rename(dir, &doomed).await?;
    tokio::fs::remove_dir_all(&doomed).await
}

fn doomed_path(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    dir.with_file_name(format!(".{name}.warden-removing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn removing_a_dir_leaves_nothing_even_after_an_earlier_interruption() {
        let root = tempfile::tempdir().unwrap();
        let world = root.path().join("world");
        std::fs::create_dir_all(world.join("region")).unwrap();
        std::fs::write(world.join("region/r.0.0.mca"), b"x").unwrap();
        // What a kill during an earlier deletion leaves behind.
        std::fs::create_dir_all(doomed_path(&world).join("old")).unwrap();
        remove_dir(&world).await.unwrap();
        assert!(!world.exists());
        assert!(!doomed_path(&world).exists());
    }
}
