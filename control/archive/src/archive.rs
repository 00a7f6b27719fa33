//! Archiving: (directory | tar stream) → tar → zstd → store, with a manifest built from the
//! same bytes on the way, then a full read-back verification. The caller may delete the node
//! copy only after these functions return `Ok`.
//!
//! Re-running is always safe: the data object is replaced atomically by `put`, the manifest
//! is written after it, and verification ties the two together by sha256, so a crash between
//! the two writes leaves an archive that fails verification (and a node copy that is kept).

use crate::error::{ArchiveError, IoContext, Result};
use crate::hashing::HashingRead;
use crate::manifest::{
    ArchiveObject, Entry, EntryKind, Manifest, DATA_OBJECT, FORMAT, MANIFEST_OBJECT,
    MANIFEST_VERSION,
};
use crate::paths::{check_symlink_target, normalize_entry_path};
use crate::pipe::{self, ChannelWriter};
use crate::store::ArchiveStore;
use crate::verify::verify;
use crate::walk::{walk, Item, Kind};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncRead;
use tokio_util::io::SyncIoBridge;

/// Knobs for archiving.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// zstd level (1..=22; 3 is zstd's own default and a good speed/ratio point).
    pub zstd_level: i32,
    /// zstd worker threads; 0 compresses on the calling blocking thread only.
    pub zstd_workers: u32,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            zstd_level: 3,
            zstd_workers: 0,
        }
    }
}

pub(crate) fn data_key(prefix: &str) -> String {
    format!("{}/{DATA_OBJECT}", prefix.trim_end_matches('/'))
}

pub(crate) fn manifest_key(prefix: &str) -> String {
    format!("{}/{MANIFEST_OBJECT}", prefix.trim_end_matches('/'))
}

type TarOut = tar::Builder<zstd::stream::write::Encoder<'static, ChannelWriter>>;

/// Archive a directory tree (the server's data directory, server stopped).
///
/// Regular files, directories and symlinks (kept as links; targets must stay inside `dir`)
/// are archived; anything else (sockets, devices) is an error rather than silently dropped.
/// Returns the manifest only after the stored archive was read back and verified.
pub async fn archive_dir<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    dir: &Path,
    opts: &ArchiveOptions,
) -> Result<Manifest> {
    let meta = tokio::fs::metadata(dir)
        .await
        .ctx(|| format!("reading archive source {}", dir.display()))?;
    if !meta.is_dir() {
        return Err(ArchiveError::io(
            format!("archive source {} is not a directory", dir.display()),
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let dir = dir.to_path_buf();
    upload(store, prefix, opts, move |out| tar_dir(out, &dir)).await
}

/// Archive a tar stream, e.g. bollard's `download_from_container` output (wrap the byte
/// stream with `tokio_util::io::StreamReader`). Entry paths are kept as they are (Docker
/// prefixes them with the directory's name), re-encoded into a fresh tar so the manifest
/// describes exactly what is stored.
pub async fn archive_tar<S, R>(
    store: &S,
    prefix: &str,
    tar_stream: R,
    opts: &ArchiveOptions,
) -> Result<Manifest>
where
    S: ArchiveStore + ?Sized,
    R: AsyncRead + Send + Unpin + 'static,
{
    // SyncIoBridge needs the runtime handle of this (async) context.
    let input = SyncIoBridge::new(tar_stream);
    upload(store, prefix, opts, move |out| retar(out, input)).await
}

async fn upload<S, F>(
    store: &S,
    prefix: &str,
    opts: &ArchiveOptions,
    produce: F,
) -> Result<Manifest>
where
    S: ArchiveStore + ?Sized,
    F: FnOnce(&mut TarOut) -> Result<Vec<Entry>> + Send + 'static,
{
    let dkey = data_key(prefix);
    let mkey = manifest_key(prefix);
    crate::store::validate_key(&dkey)?;

    let (writer, reader) = pipe::channel();
    let level = opts.zstd_level;
    let workers = opts.zstd_workers;
    let producer = tokio::task::spawn_blocking(move || -> Result<Vec<Entry>> {
        let mut enc = zstd::stream::write::Encoder::new(writer, level)
            .ctx(|| format!("starting zstd level {level}"))?;
        // a frame checksum makes corruption show up as a decode error as early as possible
        enc.include_checksum(true)
            .ctx(|| "enabling zstd checksum".into())?;
        if workers > 0 {
            enc.multithread(workers)
                .ctx(|| format!("enabling {workers} zstd workers"))?;
        }
        let mut out = tar::Builder::new(enc);
        let entries = produce(&mut out)?;
        let enc = out
            .into_inner()
            .map_err(|e| ArchiveError::from_io("finishing tar", e))?;
        let writer = enc
            .finish()
            .map_err(|e| ArchiveError::from_io("finishing zstd", e))?;
        writer
            .finish()
            .map_err(|e| ArchiveError::from_io("finishing upload stream", e))?;
        Ok(entries)
    });

    let put = store.put(&dkey, Box::new(reader));
    let (put_res, prod_res) = tokio::join!(put, producer);
    // The producer's error is the root cause when both failed (the upload only saw "stopped").
    let entries = prod_res.map_err(|e| ArchiveError::Task(e.to_string()))??;
    let info = put_res?;

    let manifest = Manifest {
        version: MANIFEST_VERSION,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        zstd_level: level,
        archive: ArchiveObject {
            object: DATA_OBJECT.to_string(),
            format: FORMAT.to_string(),
            bytes: info.bytes,
            sha256: info.sha256,
        },
        total_file_bytes: entries.iter().filter_map(|e| e.size).sum(),
        entries,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| ArchiveError::Manifest {
        key: mkey.clone(),
        reason: e.to_string(),
    })?;
    store
        .put(&mkey, Box::new(std::io::Cursor::new(json)))
        .await?;

    let verified = verify(store, prefix).await?;
    if verified != manifest {
        // someone else archived to the same prefix concurrently
        return Err(ArchiveError::Verification {
            path: mkey,
            expected: "the manifest just written".into(),
            got: "a different manifest".into(),
        });
    }
    tracing::info!(
        prefix,
        files = manifest.files().count(),
        file_bytes = manifest.total_file_bytes,
        archive_bytes = manifest.archive.bytes,
        "archive written and verified"
    );
    Ok(manifest)
}

/// Reads exactly `len` bytes or fails: tar pads a short read silently, which would turn a
/// file that shrank mid-archive into a corrupt-but-plausible entry.
struct Exact<R> {
    inner: R,
    left: u64,
    path: String,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let cap = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("`{}` is shorter than its header says", self.path),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

pub(crate) fn base_header(
    kind: tar::EntryType,
    mode: u32,
    mtime: u64,
    uid: u64,
    gid: u64,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode & 0o7777);
    h.set_mtime(mtime);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(0);
    h
}

fn append_file(
    out: &mut TarOut,
    mut header: tar::Header,
    path: &str,
    size: u64,
    data: impl Read,
) -> Result<String> {
    header.set_size(size);
    let mut hashing = HashingRead::new(Exact {
        inner: data,
        left: size,
        path: path.to_string(),
    });
    out.append_data(&mut header, path, &mut hashing)
        .map_err(|e| ArchiveError::from_io(format!("archiving `{path}`"), e))?;
    let (n, sha) = hashing.finish();
    if n != size {
        return Err(ArchiveError::io(
            format!("archiving `{path}`"),
            io::Error::other(format!("read {n} bytes, expected {size}")),
        ));
    }
    Ok(sha)
}

fn tar_dir(out: &mut TarOut, root: &Path) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    walk(root, |item| {
        let Item {
            rel: path,
            full,
            md,
            kind,
        } = item;
        let mode = md.mode() & 0o7777;
        let mtime = u64::try_from(md.mtime()).unwrap_or(0);
        let (uid, gid) = (md.uid().into(), md.gid().into());
        match kind {
            Kind::Dir => {
                let mut h = base_header(tar::EntryType::Directory, mode, mtime, uid, gid);
                out.append_data(&mut h, &path, io::empty())
                    .map_err(|e| ArchiveError::from_io(format!("archiving `{path}`"), e))?;
                entries.push(Entry {
                    path,
                    kind: EntryKind::Dir,
                    mode,
                    size: None,
                    sha256: None,
                    target: None,
                });
            }
            Kind::File => {
                let file = fs::File::open(&full).ctx(|| format!("opening {}", full.display()))?;
                let h = base_header(tar::EntryType::Regular, mode, mtime, uid, gid);
                let sha = append_file(out, h, &path, md.len(), &file)?;
                // a server still writing would give an inconsistent snapshot; refuse it
                let after = file.metadata().ctx(|| format!("stat {}", full.display()))?;
                if after.len() != md.len()
                    || after.mtime() != md.mtime()
                    || after.mtime_nsec() != md.mtime_nsec()
                {
                    return Err(ArchiveError::io(
                        format!("archiving {}", full.display()),
                        io::Error::other(
                            "file changed while it was being archived (is the server stopped?)",
                        ),
                    ));
                }
                entries.push(Entry {
                    path,
                    kind: EntryKind::File,
                    mode,
                    size: Some(md.len()),
                    sha256: Some(sha),
                    target: None,
                });
            }
            Kind::Symlink(target) => {
                let mut h = base_header(tar::EntryType::Symlink, 0o777, mtime, uid, gid);
                out.append_link(&mut h, &path, &target)
                    .map_err(|e| ArchiveError::from_io(format!("archiving `{path}`"), e))?;
                entries.push(Entry {
                    path,
                    kind: EntryKind::Symlink,
                    mode: 0o777,
                    size: None,
                    sha256: None,
                    target: Some(target),
                });
            }
        }
        Ok(())
    })?;
    Ok(entries)
}

fn retar(out: &mut TarOut, input: impl Read) -> Result<Vec<Entry>> {
    let mut ar = tar::Archive::new(input);
    let mut entries: Vec<Entry> = Vec::new();
    let mut kinds: HashMap<String, EntryKind> = HashMap::new();
    let iter = ar
        .entries()
        .map_err(|e| ArchiveError::from_io("reading input tar", e))?;
    for entry in iter {
        let mut entry = entry.map_err(|e| ArchiveError::from_io("reading input tar", e))?;
        let raw_path = entry
            .path()
            .map_err(|e| ArchiveError::from_io("reading input tar entry path", e))?
            .into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue; // metadata records, already applied by the tar reader
        }
        let Some(path) = normalize_entry_path(&raw_path)? else {
            continue; // the root directory itself
        };
        if kinds.contains_key(&path) {
            return Err(ArchiveError::Unsupported {
                path,
                reason: "appears twice in the input tar".into(),
            });
        }
        let h = entry.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let mtime = h.mtime().unwrap_or(0);
        let uid = h.uid().unwrap_or(0);
        let gid = h.gid().unwrap_or(0);
        let link = || -> Result<PathBuf> {
            match entry.link_name() {
                Ok(Some(l)) => Ok(l.into_owned()),
                Ok(None) => Err(ArchiveError::Unsupported {
                    path: path.clone(),
                    reason: "link without a target".into(),
                }),
                Err(e) => Err(ArchiveError::from_io(format!("reading link `{path}`"), e)),
            }
        };
        let e = match kind {
            tar::EntryType::Directory => {
                let mut hd = base_header(tar::EntryType::Directory, mode, mtime, uid, gid);
                out.append_data(&mut hd, &path, io::empty())
                    .map_err(|e| ArchiveError::from_io(format!("archiving `{path}`"), e))?;
                Entry {
                    path: path.clone(),
                    kind: EntryKind::Dir,
                    mode,
                    size: None,
                    sha256: None,
                    target: None,
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                let hd = base_header(tar::EntryType::Regular, mode, mtime, uid, gid);
                let sha = append_file(out, hd, &path, size, &mut entry)?;
                Entry {
                    path: path.clone(),
                    kind: EntryKind::File,
                    mode,
                    size: Some(size),
                    sha256: Some(sha),
                    target: None,
                }
            }
            tar::EntryType::Symlink => {
                let target = check_symlink_target(&path, &link()?)?;
                let mut hd = base_header(tar::EntryType::Symlink, 0o777, mtime, uid, gid);
                out.append_link(&mut hd, &path, &target)
                    .map_err(|e| ArchiveError::from_io(format!("archiving `{path}`"), e))?;
                Entry {
                    path: path.clone(),
                    kind: EntryKind::Symlink,
                    mode: 0o777,
                    size: None,
                    sha256: None,
                    target: Some(target),
                }
            }
            tar::EntryType::Link => {
                let target =
                    normalize_entry_path(&link()?)?.ok_or_else(|| ArchiveError::UnsafePath {
                        path: path.clone(),
                        reason: "hard link to the archive root".into(),
                    })?;
                if kinds.get(&target) != Some(&EntryKind::File) {
                    return Err(ArchiveError::UnsafePath {
                        path: path.clone(),
                        reason: format!(
                            "hard link target `{target}` is not an earlier regular file"
                        ),
                    });
                }
                let mut hd = base_header(tar::EntryType::Link, mode, mtime, uid, gid);
                out.append_link(&mut hd, &path, &target)
                    .map_err(|e| ArchiveError::from_io(format!("archiving `{path}`"), e))?;
                Entry {
                    path: path.clone(),
                    kind: EntryKind::Hardlink,
                    mode,
                    size: None,
                    sha256: None,
                    target: Some(target),
                }
            }
            other => {
                return Err(ArchiveError::Unsupported {
                    path,
                    reason: format!("tar entry type {other:?}"),
                })
            }
        };
        kinds.insert(path, e.kind);
        entries.push(e);
    }
    Ok(entries)
}
