//! Restoring a snapshot: blobs are fetched a few at a time and each is hashed before a
//! blocking writer puts its bytes into a fresh directory beside the target (or a tar for
//! a Docker volume). Only when every byte matched is the directory swapped into place, in
//! one rename; whatever fails, the target is untouched. [`restore_with_fallback`] walks
//! back to older snapshots when one does not verify, and says which it skipped.

use std::fs;
use std::future::Future;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::list::{list_ids, load};
use super::manifest::{SnapEntry, Snapshot};
use super::{blob, snapshot_key};
use crate::archive::base_header;
use crate::error::{ArchiveError, IoContext, Result};
use crate::manifest::EntryKind;
use crate::store::{ArchiveStore, ByteStream};
use crate::verify::{check_target_free, remove_stale_siblings, split_target, Extractor};

/// Blobs fetched ahead of the writer.
const PARALLEL: usize = 4;

/// What a restore with fallback restored, and the newer snapshots it had to skip.
#[derive(Debug)]
pub struct Restored<T = ()> {
    pub snapshot: Snapshot,
    /// (snapshot id, why it was not restored), newest first.
    pub skipped: Vec<(String, String)>,
    /// The restored data, for targets that are not a directory (a verified tar).
    pub data: T,
}

/// Restores snapshot `id` into the directory `target` (the server must be stopped).
/// `target` may hold the current world: it is replaced atomically (`RENAME_EXCHANGE`)
/// once the new copy is complete and verified, and the old copy is deleted.
pub async fn restore_snapshot<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    id: &str,
    target: &Path,
) -> Result<Snapshot> {
    let snap = load(store, prefix, id).await?;
    let (name, parent) = split_target(target)?;
    tokio::fs::create_dir_all(&parent)
        .await
        .ctx(|| format!("creating {}", parent.display()))?;
    remove_stale_siblings(&parent, &name).await?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{name}.restoring-"))
        .tempdir_in(&parent)
        .ctx(|| format!("creating a temporary directory in {}", parent.display()))?;
    let written = write(
        store,
        prefix,
        &snap,
        Sink::Dir(Extractor::new(tmp.path().into())),
    )
    .await;
    let placed = match written {
        Ok(_) => {
            let (from, to) = (tmp.path().to_path_buf(), target.to_path_buf());
            tokio::task::spawn_blocking(move || swap_in(&from, &to, &parent))
                .await
                .map_err(|e| ArchiveError::Task(e.to_string()))
                .and_then(|r| r)
        }
        Err(e) => Err(e),
    };
    let cleanup = match placed {
        // nothing was in the way: the new world is at `target`, nothing left to delete
        Ok(false) => {
            let _ = tmp.keep();
            None
        }
        // the old world now sits where the new one was built
        Ok(true) => Some(tmp),
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || tmp.close()).await;
            return Err(e);
        }
    };
    if let Some(old) = cleanup {
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || old.close()).await {
            tracing::warn!(error = %e, "restored, but the replaced world could not be deleted");
        }
    }
    Ok(snap)
}

/// Restores snapshot `id` as a verified tar (for `import_data` into a Docker volume),
/// spooled to an unlinked file in `scratch_dir` (the system temp dir if None).
pub async fn restore_snapshot_tar<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    id: &str,
    scratch_dir: Option<&Path>,
) -> Result<(Snapshot, ByteStream)> {
    let snap = load(store, prefix, id).await?;
    let file = match scratch_dir {
        Some(d) => tempfile::tempfile_in(d),
        None => tempfile::tempfile(),
    }
    .ctx(|| "creating a scratch file for the restored tar".into())?;
    let sink = Sink::Tar(
        Box::new(tar::Builder::new(file)),
        snap.created_unix_ms / 1000,
    );
    let Some(builder) = write(store, prefix, &snap, sink).await? else {
        return Err(ArchiveError::Task("tar sink lost".into()));
    };
    let mut file = (*builder)
        .into_inner()
        .map_err(|e| ArchiveError::from_io("finishing the restored tar", e))?;
    file.flush().ctx(|| "writing scratch tar".into())?;
    file.rewind().ctx(|| "rewinding scratch tar".into())?;
    let stream: ByteStream = Box::new(tokio::io::BufReader::with_capacity(
        1 << 20,
        tokio::fs::File::from_std(file),
    ));
    Ok((snap, stream))
}

/// Restores snapshot `from` (None: the newest) into the directory `target`; if it does
/// not verify (a corrupt or missing blob, a damaged manifest), the next older one is tried,
/// and so on. Errors that are not the snapshot's fault (the store unreachable, the target
/// not writable) stop at once. Fails with [`ArchiveError::NoUsableBackup`] if none verified.
pub async fn restore_with_fallback<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    from: Option<&str>,
    target: &Path,
) -> Result<Restored> {
    fallback(store, prefix, from, |id| async move {
        restore_snapshot(store, prefix, &id, target)
            .await
            .map(|s| (s, ()))
    })
    .await
}

/// [`restore_with_fallback`] into a verified tar (Docker volumes).
pub async fn restore_tar_with_fallback<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    from: Option<&str>,
    scratch_dir: Option<&Path>,
) -> Result<Restored<ByteStream>> {
    fallback(store, prefix, from, |id| async move {
        restore_snapshot_tar(store, prefix, &id, scratch_dir).await
    })
    .await
}

async fn fallback<S, T, F, Fut>(
    store: &S,
    prefix: &str,
    from: Option<&str>,
    mut attempt: F,
) -> Result<Restored<T>>
where
    S: ArchiveStore + ?Sized,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Snapshot, T)>>,
{
    let ids = list_ids(store, prefix).await?;
    let end = match from {
        None => ids.len(),
        Some(id) => {
            ids.iter()
                .position(|i| i == id)
                .ok_or_else(|| ArchiveError::NotFound {
                    key: snapshot_key(prefix, id),
                })?
                + 1
        }
    };
    let mut skipped = Vec::new();
    for id in ids[..end].iter().rev() {
        match attempt(id.clone()).await {
            Ok((snapshot, data)) => {
                return Ok(Restored {
                    snapshot,
                    skipped,
                    data,
                })
            }
            Err(e) if is_bad_copy(&e) => {
                tracing::warn!(prefix, snapshot = %id, error = %e, "backup does not verify; trying the next older one");
                skipped.push((id.clone(), e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    Err(ArchiveError::NoUsableBackup {
        prefix: prefix.to_string(),
        tried: if skipped.is_empty() {
            "there is no backup".into()
        } else {
            skipped
                .iter()
                .map(|(id, why)| format!("{id}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        },
    })
}

/// The stored copy is bad (as opposed to: it could not be reached, or written out).
fn is_bad_copy(e: &ArchiveError) -> bool {
    matches!(
        e,
        ArchiveError::Verification { .. }
            | ArchiveError::Manifest { .. }
            | ArchiveError::UnsafePath { .. }
            | ArchiveError::NotFound { .. }
            | ArchiveError::Unsupported { .. }
    )
}

/// Puts the complete, verified `from` at `to`: a plain rename when nothing is there (or
/// an empty directory), else an atomic exchange. Returns whether an old world was swapped
/// out (it is then at `from`).
fn swap_in(from: &Path, to: &Path, parent: &Path) -> Result<bool> {
    let swapped = match check_target_free(to) {
        Ok(()) => {
            fs::rename(from, to)
                .ctx(|| format!("renaming {} to {}", from.display(), to.display()))?;
            false
        }
        Err(ArchiveError::TargetNotEmpty { .. }) => {
            exchange(from, to)?;
            true
        }
        Err(e) => return Err(e),
    };
    fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing {}", parent.display()))?;
    Ok(swapped)
}

/// Swaps two paths in one step (`renameat2(RENAME_EXCHANGE)`): at no moment is there no
/// world at `b`. Filesystems without it get two renames, undone if the second fails.
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use rustix::io::Errno;
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        Err(e) if e == Errno::INVAL || e == Errno::NOSYS || e == Errno::OPNOTSUPP => {
            let mut aside = a.as_os_str().to_owned();
            aside.push(".replaced");
            let aside = std::path::PathBuf::from(aside);
            fs::rename(b, &aside).ctx(|| format!("moving {} aside", b.display()))?;
            if let Err(e) = fs::rename(a, b) {
                let _ = fs::rename(&aside, b);
                return Err(ArchiveError::io(
                    format!("renaming into {}", b.display()),
                    e,
                ));
            }
            fs::rename(&aside, a).ctx(|| format!("moving {} back", aside.display()))
        }
        Err(e) => Err(ArchiveError::io(
            format!("exchanging {} and {}", a.display(), b.display()),
            io::Error::from(e),
        )),
    }
}

/// Where restored entries go.
enum Sink {
    Dir(Extractor),
    /// A tar being written, and the mtime its entries get when the snapshot has none.
    Tar(Box<tar::Builder<fs::File>>, u64),
}

/// Fetches and verifies the snapshot's blobs in order and hands them to the blocking
/// writer; a blob that fails verification stops the writer and is the error returned.
/// Returns the tar builder of a tar sink (a directory sink is finished: modes set, synced).
async fn write<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    snap: &Snapshot,
    sink: Sink,
) -> Result<Option<Box<tar::Builder<fs::File>>>> {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(PARALLEL);
    let entries = snap.entries.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        write_entries(&entries, &mut rx, &mut sink)?;
        match sink {
            Sink::Dir(x) => x.finish().map(|()| None),
            Sink::Tar(out, _) => Ok(Some(out)),
        }
    });
    let chunks: Vec<(String, u64)> = snap
        .files()
        .flat_map(|e| {
            let size = e.size.unwrap_or(0);
            e.chunks
                .iter()
                .enumerate()
                .map(move |(i, c)| (c.clone(), snap.chunk_len(size, i)))
        })
        .collect();
    // owns `tx`: when it ends, the writer sees the end of the stream
    let fetch = async move {
        let mut blobs = futures_util::stream::iter(chunks)
            .map(|(sha, len)| async move { blob::fetch(store, prefix, &sha, len).await })
            .buffered(PARALLEL);
        while let Some(r) = blobs.next().await {
            match r {
                Ok(b) => {
                    if tx.send(Ok(b)).await.is_err() {
                        return Ok(()); // the writer stopped; its error tells why
                    }
                }
                Err(e) => {
                    let _ = tx
                        .send(Err(io::Error::other("a blob failed verification")))
                        .await;
                    return Err(e);
                }
            }
        }
        Ok(())
    };
    let (fetched, written) = tokio::join!(fetch, writer);
    fetched?;
    written.map_err(|e| ArchiveError::Task(e.to_string()))?
}

/// Reads one file's bytes from the stream of verified chunks.
struct ChunkRead<'a> {
    rx: &'a mut mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
    left: u64,
}

impl Read for ChunkRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        if self.cur.is_empty() {
            self.cur = match self.rx.blocking_recv() {
                Some(r) => r?,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "restore stopped before the file was complete",
                    ))
                }
            };
        }
        let n = self
            .cur
            .len()
            .min(buf.len())
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        self.left -= n as u64;
        Ok(n)
    }
}

fn write_entries(
    entries: &[SnapEntry],
    rx: &mut mpsc::Receiver<io::Result<Bytes>>,
    sink: &mut Sink,
) -> Result<()> {
    for e in entries {
        let path = e.path.as_str();
        let target = e.target.as_deref().unwrap_or_default();
        match (&mut *sink, e.kind) {
            (Sink::Dir(x), EntryKind::Dir) => x.dir(path, e.mode)?,
            (Sink::Dir(x), EntryKind::Symlink) => x.link(path, target, false)?,
            (Sink::Dir(x), EntryKind::Hardlink) => x.link(path, target, true)?,
            (Sink::Dir(x), EntryKind::File) => {
                let mut r = ChunkRead {
                    rx,
                    cur: Bytes::new(),
                    left: e.size.unwrap_or(0),
                };
                x.file_with(path, e.mode, |f, p| {
                    io::copy(&mut r, f).map(drop).map_err(|err| {
                        ArchiveError::from_io(format!("writing {}", p.display()), err)
                    })
                })?;
            }
            (Sink::Tar(out, default_mtime), kind) => {
                let mtime = e
                    .stat
                    .map(|s| u64::try_from(s.mtime_ns / 1_000_000_000).unwrap_or(0))
                    .unwrap_or(*default_mtime);
                let ty = match kind {
                    EntryKind::Dir => tar::EntryType::Directory,
                    EntryKind::File => tar::EntryType::Regular,
                    EntryKind::Symlink => tar::EntryType::Symlink,
                    EntryKind::Hardlink => tar::EntryType::Link,
                };
                let mut h = base_header(ty, e.mode, mtime, e.uid, e.gid);
                let io_err =
                    |err| ArchiveError::from_io(format!("writing `{path}` to the tar"), err);
                match kind {
                    EntryKind::Dir => out.append_data(&mut h, path, io::empty()).map_err(io_err)?,
                    EntryKind::Symlink | EntryKind::Hardlink => {
                        out.append_link(&mut h, path, target).map_err(io_err)?
                    }
                    EntryKind::File => {
                        let size = e.size.unwrap_or(0);
                        h.set_size(size);
                        let mut r = ChunkRead {
                            rx,
                            cur: Bytes::new(),
                            left: size,
                        };
                        out.append_data(&mut h, path, &mut r).map_err(io_err)?;
                    }
                }
            }
        }
    }
    Ok(())
}
