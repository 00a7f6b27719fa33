//! The default store: a directory on a disk other than the node's data disk (or the same one,
//! for a single-box appliance). Atomic and durable by write-to-`.partial`, fsync, rename,
//! fsync the directory.

use super::{validate_key, ArchiveStore, ByteStream, ObjectInfo, ObjectMeta};
use crate::error::{ArchiveError, IoContext, Result};
use crate::hashing::HashingAsyncRead;
use async_trait::async_trait;
use std::io;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Suffix of in-progress uploads; never listed, overwritten by the next `put`.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Objects as plain files below a root directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// Create the root if needed.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .ctx(|| format!("creating archive directory {}", root.display()))?;
        Ok(LocalDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Filesystem path of an object (tests and operators poke at it directly).
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        if key.ends_with(PARTIAL_SUFFIX) {
            return Err(ArchiveError::InvalidKey {
                key: key.to_string(),
                reason: format!("keys ending in `{PARTIAL_SUFFIX}` are reserved"),
            });
        }
        Ok(self.root.join(key))
    }
}

async fn fsync_dir(dir: &Path) -> Result<()> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&d).and_then(|f| f.sync_all()))
        .await
        .map_err(|e| ArchiveError::Task(e.to_string()))?
        .ctx(|| format!("syncing directory {}", dir.display()))
}

#[async_trait]
impl ArchiveStore for LocalDir {
    async fn put(&self, key: &str, reader: ByteStream) -> Result<ObjectInfo> {
        let path = self.path_of(key)?;
        let parent = path.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .ctx(|| format!("creating {}", parent.display()))?;
        let mut partial = path.clone().into_os_string();
        partial.push(PARTIAL_SUFFIX);
        let partial = PathBuf::from(partial);

        let write = async {
            // truncate: a leftover .partial from a crashed run is simply replaced
            let mut file = tokio::fs::File::create(&partial)
                .await
                .ctx(|| format!("creating {}", partial.display()))?;
            // big reads: every tokio::fs write is a blocking-pool round trip, so 8 KiB
            // writes (tokio::io::copy's default) would cap throughput far below the disk
            let mut hashing =
                tokio::io::BufReader::with_capacity(1 << 20, HashingAsyncRead::new(reader));
            tokio::io::copy_buf(&mut hashing, &mut file)
                .await
                .map_err(|e| ArchiveError::from_io(format!("writing {}", partial.display()), e))?;
            file.flush()
                .await
                .ctx(|| format!("flushing {}", partial.display()))?;
            file.sync_all()
                .await
                .ctx(|| format!("syncing {}", partial.display()))?;
            Ok::<_, ArchiveError>(hashing.into_inner().finish())
        };
        let (bytes, sha256) = match write.await {
            Ok(v) => v,
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(e);
            }
        };
        tokio::fs::rename(&partial, &path)
            .await
            .ctx(|| format!("renaming {} into place", partial.display()))?;
        fsync_dir(&parent).await?;
        Ok(ObjectInfo { bytes, sha256 })
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        let path = self.path_of(key)?;
        match tokio::fs::File::open(&path).await {
            Ok(f) => Ok(Box::new(tokio::io::BufReader::with_capacity(1 << 20, f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ArchiveError::NotFound {
                key: key.to_string(),
            }),
            Err(e) => Err(ArchiveError::io(format!("opening {}", path.display()), e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                bytes: m.len(),
                modified_unix_ms: m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ArchiveError::io(format!("stat {}", path.display()), e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                if let Some(parent) = path.parent() {
                    fsync_dir(parent).await?;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ArchiveError::io(format!("deleting {}", path.display()), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = prefix.trim_end_matches('/');
        let base = if prefix.is_empty() {
            self.root.clone()
        } else {
            validate_key(prefix)?;
            self.root.join(prefix)
        };
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || list_blocking(&base, &prefix))
            .await
            .map_err(|e| ArchiveError::Task(e.to_string()))?
    }
}

fn list_blocking(base: &Path, prefix: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(base.to_path_buf(), prefix.to_string())];
    while let Some((dir, key_prefix)) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ArchiveError::io(format!("listing {}", dir.display()), e)),
        };
        for entry in rd {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue; // not a key we could have written
            };
            let key = if key_prefix.is_empty() {
                name.clone()
            } else {
                format!("{key_prefix}/{name}")
            };
            let ft = entry
                .file_type()
                .ctx(|| format!("stat {}", entry.path().display()))?;
            if ft.is_dir() {
                stack.push((entry.path(), key));
            } else if ft.is_file() && !name.ends_with(PARTIAL_SUFFIX) {
                out.push(key);
            }
        }
    }
    out.sort();
    Ok(out)
}
