//! Taking a snapshot: a blocking thread walks the world, cuts files into chunks, hashes
//! them and compresses the ones the store does not have yet; the async side uploads those
//! few at a time, reading each back before it counts. The manifest goes last.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use super::id::new_id;
use super::list::{list_ids, load};
use super::manifest::{
    decode, encode, FileStat, SnapEntry, Snapshot, Stats, MAX_MANIFEST_BYTES, SNAPSHOT_VERSION,
};
use super::{blob, snapshot_key, CHUNK_BYTES};
use crate::error::{ArchiveError, IoContext, Result};
use crate::hashing::sha256_hex;
use crate::manifest::EntryKind;
use crate::paths::{check_symlink_target, normalize_entry_path};
use crate::store::ArchiveStore;
use crate::walk::{walk, Item, Kind};

/// A file modified less than this before a snapshot started is read again next time,
/// whatever its stat says (timestamps have a clock tick's granularity).
const RACY_MS: i64 = 2000;

/// How a snapshot is taken.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The server it belongs to (recorded in the manifest).
    pub server: String,
    /// Why it is taken (recorded, shown in listings).
    pub note: String,
    pub zstd_level: i32,
    pub chunk_bytes: usize,
    /// Blobs uploaded (and read back) at once.
    pub parallel: usize,
    /// Take files unchanged since the newest snapshot (size, mtime, ctime, inode) from it
    /// without reading them.
    pub reuse_unchanged: bool,
}

impl BackupOptions {
    pub fn new(server: impl Into<String>, note: impl Into<String>) -> Self {
        BackupOptions {
            server: server.into(),
            note: note.into(),
            zstd_level: 3,
            chunk_bytes: CHUNK_BYTES,
            parallel: 4,
            reuse_unchanged: true,
        }
    }
}

/// A chunk the store does not have yet, compressed, on its way to the uploader.
struct NewBlob {
    sha: String,
    raw_len: u64,
    stored: Vec<u8>,
}

/// The blocking side's state: which blobs exist, where new ones go, what was done.
struct Producer {
    tx: mpsc::Sender<NewBlob>,
    known: HashSet<String>,
    level: i32,
    buf: Vec<u8>,
    stats: Stats,
    /// Files that changed while they were read (an online copy without save-off).
    changed: u64,
}

impl Producer {
    /// Cuts `r` into chunks, queueing the new ones; returns (bytes read, chunk names).
    fn chunks(&mut self, r: &mut impl Read, what: &str) -> Result<(u64, Vec<String>)> {
        let mut size = 0u64;
        let mut names = Vec::new();
        loop {
            let n = fill(r, &mut self.buf).ctx(|| format!("reading {what}"))?;
            if n == 0 {
                break;
            }
            let data = &self.buf[..n];
            let sha = sha256_hex(data);
            if self.known.insert(sha.clone()) {
                let stored = blob::encode(data, self.level)?;
                self.stats.new_blobs += 1;
                self.stats.new_raw_bytes += n as u64;
                self.tx
                    .blocking_send(NewBlob {
                        sha: sha.clone(),
                        raw_len: n as u64,
                        stored,
                    })
                    .map_err(|_| {
                        ArchiveError::from_io(
                            "queueing a chunk",
                            io::Error::new(io::ErrorKind::BrokenPipe, "backup upload stopped"),
                        )
                    })?;
            }
            names.push(sha);
            size += n as u64;
            if n < self.buf.len() {
                break;
            }
        }
        self.stats.read_bytes += size;
        self.stats.files += 1;
        self.stats.bytes += size;
        Ok((size, names))
    }
}

/// Reads until `buf` is full or the input ends.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn stat_of(md: &std::fs::Metadata) -> FileStat {
    FileStat {
        mtime_ns: md.mtime().saturating_mul(1_000_000_000) + md.mtime_nsec(),
        ctime_ns: md.ctime().saturating_mul(1_000_000_000) + md.ctime_nsec(),
        ino: md.ino(),
    }
}

fn entry(path: String, kind: EntryKind, mode: u32) -> SnapEntry {
    SnapEntry {
        path,
        kind,
        mode,
        size: None,
        target: None,
        chunks: Vec::new(),
        stat: None,
        uid: 0,
        gid: 0,
    }
}

/// Backs up the directory tree `dir` (a server's world) as a new snapshot below `prefix`.
/// Returns the snapshot once every new blob and the manifest were read back and verified.
///
/// Offline (server stopped) the copy is exact. Online, the caller must have stopped the
/// server's saving (RCON `save-off` + `save-all flush`); files that still change while
/// being read (logs) are stored as read and counted in the log.
pub async fn backup_dir<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    dir: &Path,
    opts: &BackupOptions,
) -> Result<Snapshot> {
    let meta = tokio::fs::metadata(dir)
        .await
        .ctx(|| format!("reading backup source {}", dir.display()))?;
    if !meta.is_dir() {
        return Err(ArchiveError::io(
            format!("backup source {} is not a directory", dir.display()),
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let parent: HashMap<String, SnapEntry> = if opts.reuse_unchanged {
        newest(store, prefix)
            .await
            .map(|s| {
                // A file changed just before (or while) the last snapshot read it may have
                // kept its timestamps through a later write in the same clock tick: only
                // files already quiet then are trusted by their stat (git's "racy clean").
                let quiet_before = (s.created_unix_ms as i64 - RACY_MS) * 1_000_000;
                s.entries
                    .into_iter()
                    .filter(|e| {
                        e.kind == EntryKind::File
                            && e.stat.is_some_and(|st| {
                                st.mtime_ns < quiet_before && st.ctime_ns < quiet_before
                            })
                    })
                    .map(|e| (e.path.clone(), e))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        HashMap::new()
    };
    let dir = dir.to_path_buf();
    take(store, prefix, opts, move |p| produce_dir(p, &dir, &parent)).await
}

/// Backs up a tar stream (a Docker volume: bollard's `download_from_container`), entry
/// paths kept as they are, like [`crate::archive_tar`].
pub async fn backup_tar<S, R>(
    store: &S,
    prefix: &str,
    tar_stream: R,
    opts: &BackupOptions,
) -> Result<Snapshot>
where
    S: ArchiveStore + ?Sized,
    R: AsyncRead + Send + Unpin + 'static,
{
    let input = SyncIoBridge::new(tar_stream);
    take(store, prefix, opts, move |p| produce_tar(p, input)).await
}

/// The newest snapshot that can be read, if any (a parent for unchanged files).
async fn newest<S: ArchiveStore + ?Sized>(store: &S, prefix: &str) -> Option<Snapshot> {
    let ids = list_ids(store, prefix).await.ok()?;
    for id in ids.iter().rev() {
        match load(store, prefix, id).await {
            Ok(s) => return Some(s),
            Err(e) => {
                tracing::warn!(prefix, snapshot = %id, error = %e, "unreadable snapshot; every file is read again")
            }
        }
    }
    None
}

async fn take<S, F>(store: &S, prefix: &str, opts: &BackupOptions, produce: F) -> Result<Snapshot>
where
    S: ArchiveStore + ?Sized,
    F: FnOnce(&mut Producer) -> Result<Vec<SnapEntry>> + Send + 'static,
{
    let started = crate::backup::now_ms();
    let t0 = std::time::Instant::now();
    if opts.chunk_bytes < 4096 || opts.chunk_bytes as u64 > super::manifest::MAX_CHUNK {
        return Err(ArchiveError::Config(format!(
            "chunk size {} out of range",
            opts.chunk_bytes
        )));
    }
    let known = blob::existing(store, prefix).await?;
    let (tx, mut rx) = mpsc::channel::<NewBlob>(opts.parallel.max(1) * 2);
    let (level, chunk) = (opts.zstd_level, opts.chunk_bytes);
    let producer = tokio::task::spawn_blocking(move || {
        let mut p = Producer {
            tx,
            known,
            level,
            buf: vec![0; chunk],
            stats: Stats::default(),
            changed: 0,
        };
        let entries = produce(&mut p)?;
        Ok::<_, ArchiveError>((entries, p.stats, p.changed))
    });
    let uploads = futures_util::stream::poll_fn(|cx| rx.poll_recv(cx))
        .map(|b: NewBlob| async move {
            blob::put_verified(store, prefix, &b.sha, b.raw_len, b.stored).await
        })
        .buffer_unordered(opts.parallel.max(1));
    let upload = async {
        let mut uploads = std::pin::pin!(uploads);
        let mut stored = 0u64;
        while let Some(r) = uploads.next().await {
            stored += r?;
        }
        Ok::<_, ArchiveError>(stored)
    };
    let (up, prod) = tokio::join!(upload, producer);
    // An upload failure is the root cause when both failed (the producer only saw "stopped").
    let stored = up?;
    let (entries, mut stats, changed) = prod.map_err(|e| ArchiveError::Task(e.to_string()))??;
    stats.new_stored_bytes = stored;
    if changed > 0 {
        tracing::warn!(
            prefix,
            files = changed,
            "files changed while they were backed up; stored as read"
        );
    }
    let mut snapshot = Snapshot {
        version: SNAPSHOT_VERSION,
        id: String::new(),
        server: opts.server.clone(),
        created_unix_ms: started,
        note: opts.note.clone(),
        chunk_bytes: chunk as u64,
        zstd_level: level,
        stats,
        entries,
    };
    // two snapshots in one second get a suffix; the manifest never replaces another
    for n in 0..1000 {
        let id = new_id(started, n);
        if store.head(&snapshot_key(prefix, &id)).await?.is_none() {
            snapshot.id = id;
            break;
        }
    }
    if snapshot.id.is_empty() {
        return Err(ArchiveError::Config("no free snapshot id".into()));
    }
    write_manifest(store, prefix, &snapshot).await?;
    tracing::info!(
        prefix,
        snapshot = %snapshot.id,
        files = snapshot.stats.files,
        bytes = snapshot.stats.bytes,
        read = snapshot.stats.read_bytes,
        new_blobs = snapshot.stats.new_blobs,
        new_stored = snapshot.stats.new_stored_bytes,
        secs = t0.elapsed().as_secs_f64(),
        "backup written and verified"
    );
    Ok(snapshot)
}

/// Writes the manifest and reads it back: the snapshot exists from here on.
async fn write_manifest<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    s: &Snapshot,
) -> Result<()> {
    let key = snapshot_key(prefix, &s.id);
    let bytes = encode(s)?;
    store
        .put(&key, Box::new(std::io::Cursor::new(bytes.clone())))
        .await?;
    let mut back = Vec::new();
    store
        .get(&key)
        .await?
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut back)
        .await
        .ctx(|| format!("reading {key}"))?;
    if back != bytes || decode(&key, &s.id, &back)? != *s {
        return Err(ArchiveError::Verification {
            path: key,
            expected: "the manifest just written".into(),
            got: "different bytes".into(),
        });
    }
    Ok(())
}

fn produce_dir(
    p: &mut Producer,
    root: &Path,
    parent: &HashMap<String, SnapEntry>,
) -> Result<Vec<SnapEntry>> {
    let mut entries = Vec::new();
    walk(root, |item| {
        let Item {
            rel,
            full,
            md,
            kind,
        } = item;
        let mode = md.mode() & 0o7777;
        let mut e = match kind {
            Kind::Dir => entry(rel, EntryKind::Dir, mode),
            Kind::Symlink(target) => {
                let mut e = entry(rel, EntryKind::Symlink, 0o777);
                e.target = Some(target);
                e
            }
            Kind::File => {
                let stat = stat_of(&md);
                let mut e = entry(rel, EntryKind::File, mode);
                let unchanged = parent.get(&e.path).filter(|old| {
                    old.stat == Some(stat)
                        && old.size == Some(md.len())
                        && old.mode == mode
                        && old.chunks.iter().all(|c| p.known.contains(c))
                });
                if let Some(old) = unchanged {
                    e.size = old.size;
                    e.chunks = old.chunks.clone();
                    p.stats.reused_files += 1;
                    p.stats.files += 1;
                    p.stats.bytes += md.len();
                } else {
                    let mut f =
                        std::fs::File::open(&full).ctx(|| format!("opening {}", full.display()))?;
                    let (size, chunks) = p.chunks(&mut f, &full.display().to_string())?;
                    let after = f.metadata().ctx(|| format!("stat {}", full.display()))?;
                    if after.len() != size || stat_of(&after).mtime_ns != stat.mtime_ns {
                        p.changed += 1;
                    }
                    e.size = Some(size);
                    e.chunks = chunks;
                }
                e.stat = Some(stat);
                e
            }
        };
        e.uid = md.uid().into();
        e.gid = md.gid().into();
        entries.push(e);
        Ok(())
    })?;
    Ok(entries)
}

fn produce_tar(p: &mut Producer, input: impl Read) -> Result<Vec<SnapEntry>> {
    let mut ar = tar::Archive::new(input);
    let mut entries: Vec<SnapEntry> = Vec::new();
    let mut kinds: HashMap<String, EntryKind> = HashMap::new();
    let bad_input = |e| ArchiveError::from_io("reading input tar", e);
    for t in ar.entries().map_err(bad_input)? {
        let mut t = t.map_err(bad_input)?;
        let ty = t.header().entry_type();
        if matches!(
            ty,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue; // metadata records, already applied by the tar reader
        }
        let raw = t.path().map_err(bad_input)?.into_owned();
        let Some(path) = normalize_entry_path(&raw)? else {
            continue; // the root directory itself
        };
        if kinds.contains_key(&path) {
            return Err(ArchiveError::Unsupported {
                path,
                reason: "appears twice in the input tar".into(),
            });
        }
        let mode = t.header().mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = (t.header().uid().unwrap_or(0), t.header().gid().unwrap_or(0));
        let link = t.link_name().map_err(bad_input)?.map(|l| l.into_owned());
        let mut e = match ty {
            tar::EntryType::Directory => entry(path.clone(), EntryKind::Dir, mode),
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut e = entry(path.clone(), EntryKind::File, mode);
                let (size, chunks) = p.chunks(&mut t, &path)?;
                e.size = Some(size);
                e.chunks = chunks;
                e
            }
            tar::EntryType::Symlink => {
                let target = link.ok_or_else(|| ArchiveError::Unsupported {
                    path: path.clone(),
                    reason: "link without a target".into(),
                })?;
                let mut e = entry(path.clone(), EntryKind::Symlink, 0o777);
                e.target = Some(check_symlink_target(&path, &target)?);
                e
            }
            tar::EntryType::Link => {
                let target = link
                    .as_deref()
                    .map(normalize_entry_path)
                    .transpose()?
                    .flatten()
                    .filter(|t| kinds.get(t) == Some(&EntryKind::File))
                    .ok_or_else(|| ArchiveError::UnsafePath {
                        path: path.clone(),
                        reason: "hard link target is not an earlier regular file".into(),
                    })?;
                let mut e = entry(path.clone(), EntryKind::Hardlink, mode);
                e.target = Some(target);
                e
            }
            other => {
                return Err(ArchiveError::Unsupported {
                    path,
                    reason: format!("tar entry type {other:?}"),
                })
            }
        };
        e.uid = uid;
        e.gid = gid;
        kinds.insert(path, e.kind);
        entries.push(e);
    }
    Ok(entries)
}
