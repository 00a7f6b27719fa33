//! Read-back verification and restore share one pass over the stored object: download,
//! hash the compressed bytes, decompress, and check every tar entry against the manifest
//! while (optionally) extracting it or copying the tar out. Restore therefore cannot
//! produce data that verification would have rejected.

use crate::archive::{data_key, manifest_key};
use crate::error::{ArchiveError, IoContext, Result};
use crate::hashing::HashingRead;
use crate::manifest::{Entry, EntryKind, Manifest, DATA_OBJECT, FORMAT, MANIFEST_VERSION};
use crate::paths::{check_symlink_target, normalize_entry_path};
use crate::store::{ArchiveStore, ByteStream};
use std::collections::HashMap;
use std::fs;
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;
use tokio_util::io::SyncIoBridge;

/// A manifest is small; anything far larger is not one of ours.
const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// Download and check the archive at `prefix`: the object's size and sha256, every file's
/// size and sha256, and that the tar holds exactly the manifest's entries (nothing missing,
/// nothing extra, no unsafe paths). A missing or partial object fails cleanly.
pub async fn verify<S: ArchiveStore + ?Sized>(store: &S, prefix: &str) -> Result<Manifest> {
    let manifest = load_manifest(store, prefix).await?;
    let data = store.get(&data_key(prefix)).await?;
    let m = manifest.clone();
    let key = data_key(prefix);
    run_blocking(data, move |r| check_stream(r, &m, &key, Sink::None)).await?;
    Ok(manifest)
}

/// Read and sanity-check `<prefix>/manifest.json`.
pub async fn load_manifest<S: ArchiveStore + ?Sized>(store: &S, prefix: &str) -> Result<Manifest> {
    let key = manifest_key(prefix);
    let reader = store.get(&key).await?;
    let mut buf = Vec::new();
    reader
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut buf)
        .await
        .ctx(|| format!("reading {key}"))?;
    let bad = |reason: String| ArchiveError::Manifest {
        key: key.clone(),
        reason,
    };
    if buf.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(bad(format!("larger than {MAX_MANIFEST_BYTES} bytes")));
    }
    let manifest: Manifest = serde_json::from_slice(&buf).map_err(|e| bad(e.to_string()))?;
    if manifest.version != MANIFEST_VERSION {
        return Err(bad(format!(
            "unsupported version {} (this build reads {MANIFEST_VERSION})",
            manifest.version
        )));
    }
    if manifest.archive.object != DATA_OBJECT || manifest.archive.format != FORMAT {
        return Err(bad(format!(
            "unexpected archive object `{}` / format `{}`",
            manifest.archive.object, manifest.archive.format
        )));
    }
    Ok(manifest)
}

/// Restore the archive at `prefix` into `target`, which must not exist or be an empty
/// directory. Extraction goes to a fresh sibling `<target>.restoring-<random>` and is renamed
/// into place only after every byte was verified; on any failure the sibling is removed and
/// `target` is untouched. Leftover siblings from a crashed restore are removed first.
pub async fn restore_dir<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    target: &Path,
) -> Result<Manifest> {
    let (name, parent) = split_target(target)?;
    check_target_free(target)?;
    tokio::fs::create_dir_all(&parent)
        .await
        .ctx(|| format!("creating {}", parent.display()))?;
    remove_stale_siblings(&parent, &name).await?;

    let manifest = load_manifest(store, prefix).await?;
    let data = store.get(&data_key(prefix)).await?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{name}.restoring-"))
        .tempdir_in(&parent)
        .ctx(|| format!("creating a temporary directory in {}", parent.display()))?;
    let tmp_path = tmp.path().to_path_buf();

    let m = manifest.clone();
    let key = data_key(prefix);
    let root = tmp_path.clone();
    let res = run_blocking(data, move |r| {
        check_stream(r, &m, &key, Sink::Extract(Extractor::new(root)))
    })
    .await;
    let res = match res {
        Ok(()) => {
            let target = target.to_path_buf();
            let parent = parent.clone();
            // rename(2) onto an empty directory replaces it atomically; onto a non-empty one
            // it fails, so a concurrent writer to `target` cannot lose data here
            tokio::task::spawn_blocking(move || {
                check_target_free(&target)?;
                fs::rename(&tmp_path, &target)
                    .ctx(|| format!("renaming {} to {}", tmp_path.display(), target.display()))?;
                fs::File::open(&parent)
                    .and_then(|d| d.sync_all())
                    .ctx(|| format!("syncing {}", parent.display()))
            })
            .await
            .map_err(|e| ArchiveError::Task(e.to_string()))
            .and_then(|r| r)
        }
        Err(e) => Err(e),
    };
    match res {
        Ok(()) => {
            // the directory now lives at `target`; TempDir must not delete it
            let _ = tmp.keep();
            Ok(manifest)
        }
        Err(e) => {
            let cleanup = tokio::task::spawn_blocking(move || tmp.close()).await;
            if let Ok(Err(ce)) = cleanup {
                tracing::warn!(error = %ce, "could not remove temporary restore directory");
            }
            Err(e)
        }
    }
}

/// Verify the archive and return its tar (decompressed) for `bollard`'s
/// `upload_to_container`. The tar is spooled to an unlinked temporary file under
/// `scratch_dir` (the system temp dir if `None`) while verifying, so nothing unverified is
/// ever handed out; needs scratch space for the uncompressed size.
pub async fn restore_tar_stream<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    scratch_dir: Option<&Path>,
) -> Result<ByteStream> {
    let manifest = load_manifest(store, prefix).await?;
    let data = store.get(&data_key(prefix)).await?;
    let file = match scratch_dir {
        Some(d) => tempfile::tempfile_in(d),
        None => tempfile::tempfile(),
    }
    .ctx(|| "creating a scratch file for the restored tar".into())?;
    let key = data_key(prefix);
    let file = run_blocking(data, move |r| {
        let mut file = file;
        check_stream(r, &manifest, &key, Sink::Tar(&mut file))?;
        file.flush().ctx(|| "writing scratch tar".into())?;
        file.rewind().ctx(|| "rewinding scratch tar".into())?;
        Ok(file)
    })
    .await?;
    Ok(Box::new(tokio::io::BufReader::with_capacity(
        1 << 20,
        tokio::fs::File::from_std(file),
    )))
}

/// A restore target's final name and its parent directory.
pub(crate) fn split_target(target: &Path) -> Result<(String, PathBuf)> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            ArchiveError::io(
                format!("restore target {}", target.display()),
                io::Error::new(io::ErrorKind::InvalidInput, "needs a UTF-8 final component"),
            )
        })?
        .to_string();
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((name, parent))
}

pub(crate) fn check_target_free(target: &Path) -> Result<()> {
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ArchiveError::io(format!("stat {}", target.display()), e)),
        Ok(md) if md.is_dir() => {
            let mut rd = fs::read_dir(target).ctx(|| format!("listing {}", target.display()))?;
            if rd.next().is_none() {
                Ok(())
            } else {
                Err(ArchiveError::TargetNotEmpty {
                    path: target.to_path_buf(),
                })
            }
        }
        Ok(_) => Err(ArchiveError::TargetNotEmpty {
            path: target.to_path_buf(),
        }),
    }
}

pub(crate) async fn remove_stale_siblings(parent: &Path, name: &str) -> Result<()> {
    let parent = parent.to_path_buf();
    let stale_prefix = format!("{name}.restoring-");
    tokio::task::spawn_blocking(move || -> Result<()> {
        for entry in fs::read_dir(&parent).ctx(|| format!("listing {}", parent.display()))? {
            let entry = entry.ctx(|| format!("listing {}", parent.display()))?;
            let is_stale = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&stale_prefix));
            if is_stale && entry.file_type().is_ok_and(|t| t.is_dir()) {
                tracing::info!(path = %entry.path().display(), "removing leftover partial restore");
                fs::remove_dir_all(entry.path())
                    .ctx(|| format!("removing {}", entry.path().display()))?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| ArchiveError::Task(e.to_string()))?
}

async fn run_blocking<T, F>(data: ByteStream, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(SyncIoBridge<ByteStream>) -> Result<T> + Send + 'static,
{
    let bridge = SyncIoBridge::new(data);
    tokio::task::spawn_blocking(move || f(bridge))
        .await
        .map_err(|e| ArchiveError::Task(e.to_string()))?
}

enum Sink<'a> {
    None,
    Extract(Extractor),
    Tar(&'a mut fs::File),
}

/// Copies everything read through it to `out` (the verified tar for Docker).
struct Tee<'a, R> {
    inner: R,
    out: Option<&'a mut fs::File>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(out) = self.out.as_mut() {
            out.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

pub(crate) fn mismatch(
    path: &str,
    expected: impl Into<String>,
    got: impl Into<String>,
) -> ArchiveError {
    ArchiveError::Verification {
        path: path.to_string(),
        expected: expected.into(),
        got: got.into(),
    }
}

/// The single verification pass. Errors about the object as a whole (size, sha256) win over
/// errors found inside it, since they are the root cause (e.g. a flipped byte shows up first
/// as a zstd checksum error).
fn check_stream(raw: impl Read, manifest: &Manifest, key: &str, sink: Sink<'_>) -> Result<()> {
    let mut raw = HashingRead::new(raw);
    let (tar_out, mut extractor) = match sink {
        Sink::None => (None, None),
        Sink::Extract(x) => (None, Some(x)),
        Sink::Tar(f) => (Some(f), None),
    };
    let content = check_entries(&mut raw, manifest, tar_out, extractor.as_mut());
    // hash whatever the decoder did not consume, so the object check covers every byte
    let drained = io::copy(&mut raw, &mut io::sink());
    let (bytes, sha) = raw.finish();
    if let Err(e) = drained {
        return Err(ArchiveError::from_io(format!("downloading `{key}`"), e));
    }
    if bytes != manifest.archive.bytes {
        return Err(mismatch(
            key,
            format!("{} bytes", manifest.archive.bytes),
            format!("{bytes} bytes"),
        ));
    }
    if sha != manifest.archive.sha256 {
        return Err(mismatch(
            key,
            format!("sha256 {}", manifest.archive.sha256),
            format!("sha256 {sha}"),
        ));
    }
    content?;
    if let Some(x) = extractor {
        x.finish()?;
    }
    Ok(())
}

fn check_entries<R: Read>(
    raw: &mut R,
    manifest: &Manifest,
    tar_out: Option<&mut fs::File>,
    mut extractor: Option<&mut Extractor>,
) -> Result<()> {
    let expected: HashMap<&str, &Entry> = manifest
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e))
        .collect();
    if expected.len() != manifest.entries.len() {
        return Err(ArchiveError::Manifest {
            key: DATA_OBJECT.into(),
            reason: "duplicate paths in manifest".into(),
        });
    }
    let mut seen: HashMap<String, EntryKind> = HashMap::new();
    let decoder = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 20, raw))
        .map_err(|e| ArchiveError::from_io("starting zstd decoder", e))?;
    let mut ar = tar::Archive::new(Tee {
        inner: decoder,
        out: tar_out,
    });
    let corrupt =
        |what: &str, e: io::Error| ArchiveError::from_io(format!("{what} (archive corrupt?)"), e);
    for entry in ar.entries().map_err(|e| corrupt("reading tar", e))? {
        let mut entry = entry.map_err(|e| corrupt("reading tar", e))?;
        let raw_path = entry
            .path()
            .map_err(|e| corrupt("reading tar entry path", e))?
            .into_owned();
        let Some(path) = normalize_entry_path(&raw_path)? else {
            continue;
        };
        let Some(want) = expected.get(path.as_str()) else {
            return Err(mismatch(
                &path,
                "no such entry (not in manifest)",
                "entry in archive",
            ));
        };
        if seen.contains_key(&path) {
            return Err(mismatch(&path, "one entry", "duplicate entry in archive"));
        }
        // an entry below a link (or a file) would be written through it on restore; refusing
        // it here keeps "verified" meaning "restorable"
        for (i, _) in path.match_indices('/') {
            if let Some(k) = seen.get(&path[..i]) {
                if *k != EntryKind::Dir {
                    return Err(ArchiveError::UnsafePath {
                        path: path.clone(),
                        reason: format!("parent `{}` is a {k:?}, not a directory", &path[..i]),
                    });
                }
            }
        }
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => EntryKind::Hardlink,
            other => {
                return Err(ArchiveError::Unsupported {
                    path,
                    reason: format!("tar entry type {other:?}"),
                })
            }
        };
        if kind != want.kind {
            return Err(mismatch(
                &path,
                format!("{:?}", want.kind),
                format!("{kind:?}"),
            ));
        }
        let link_target = if matches!(kind, EntryKind::Symlink | EntryKind::Hardlink) {
            let t = entry
                .link_name()
                .map_err(|e| corrupt("reading link target", e))?
                .ok_or_else(|| mismatch(&path, "a link target", "none"))?
                .into_owned();
            let t = if kind == EntryKind::Symlink {
                check_symlink_target(&path, &t)?
            } else {
                let t = normalize_entry_path(&t)?
                    .ok_or_else(|| mismatch(&path, "a hard link target", "the root"))?;
                if seen.get(&t) != Some(&EntryKind::File) {
                    return Err(ArchiveError::UnsafePath {
                        path,
                        reason: format!("hard link target `{t}` is not an earlier regular file"),
                    });
                }
                t
            };
            if want.target.as_deref() != Some(t.as_str()) {
                return Err(mismatch(
                    &path,
                    format!("link to {:?}", want.target),
                    format!("link to {t:?}"),
                ));
            }
            Some(t)
        } else {
            None
        };
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        match kind {
            EntryKind::File => {
                let size = entry.size();
                if Some(size) != want.size {
                    return Err(mismatch(
                        &path,
                        format!("{:?} bytes", want.size),
                        format!("{size} bytes"),
                    ));
                }
                let mut hashing = HashingRead::new(&mut entry);
                match extractor.as_deref_mut() {
                    Some(x) => x.file(&path, &mut hashing, mode)?,
                    None => {
                        io::copy(&mut hashing, &mut io::sink())
                            .map_err(|e| corrupt(&format!("reading `{path}`"), e))?;
                    }
                }
                let (n, sha) = hashing.finish();
                if n != size {
                    return Err(mismatch(
                        &path,
                        format!("{size} bytes"),
                        format!("{n} bytes"),
                    ));
                }
                if want.sha256.as_deref() != Some(sha.as_str()) {
                    return Err(mismatch(
                        &path,
                        format!("sha256 {}", want.sha256.as_deref().unwrap_or("<none>")),
                        format!("sha256 {sha}"),
                    ));
                }
            }
            EntryKind::Dir => {
                if let Some(x) = extractor.as_deref_mut() {
                    x.dir(&path, mode)?;
                }
            }
            EntryKind::Symlink | EntryKind::Hardlink => {
                if let (Some(x), Some(t)) = (extractor.as_deref_mut(), link_target) {
                    x.link(&path, &t, kind == EntryKind::Hardlink)?;
                }
            }
        }
        seen.insert(path, kind);
    }
    // tar stops at its end-of-archive blocks; read the rest so the tee and the zstd frame
    // checksum see everything
    let mut rest = ar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| corrupt("reading archive tail", e))?;
    if let Some(missing) = manifest
        .entries
        .iter()
        .find(|e| !seen.contains_key(&e.path))
    {
        return Err(mismatch(&missing.path, "present", "missing from archive"));
    }
    Ok(())
}

/// Writes verified entries below a fresh root, refusing to follow any symlink on the way
/// (archive restores and backup restores both write through it).
pub(crate) struct Extractor {
    root: PathBuf,
    /// Directory modes are applied last so a read-only directory cannot block its children.
    dir_modes: Vec<(PathBuf, u32)>,
}

impl Extractor {
    pub(crate) fn new(root: PathBuf) -> Self {
        Extractor {
            root,
            dir_modes: Vec::new(),
        }
    }

    /// Make sure every ancestor of `rel` is a real directory (creating missing ones), never a
    /// symlink, so writes cannot be redirected outside the root.
    fn prepare_parent(&self, rel: &str) -> Result<PathBuf> {
        let mut cur = self.root.clone();
        let mut parts = rel.split('/').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                return Ok(cur.join(part));
            }
            cur.push(part);
            match fs::symlink_metadata(&cur) {
                Ok(md) if md.file_type().is_dir() => {}
                Ok(_) => {
                    return Err(ArchiveError::UnsafePath {
                        path: rel.to_string(),
                        reason: "a parent component is a symlink or file".into(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).ctx(|| format!("creating {}", cur.display()))?;
                }
                Err(e) => return Err(ArchiveError::io(format!("stat {}", cur.display()), e)),
            }
        }
        Ok(cur)
    }

    pub(crate) fn dir(&mut self, rel: &str, mode: u32) -> Result<()> {
        let p = self.prepare_parent(rel)?;
        match fs::symlink_metadata(&p) {
            Ok(md) if md.file_type().is_dir() => {}
            Ok(_) => {
                return Err(ArchiveError::UnsafePath {
                    path: rel.to_string(),
                    reason: "directory path already exists as a non-directory".into(),
                })
            }
            Err(_) => fs::create_dir(&p).ctx(|| format!("creating {}", p.display()))?,
        }
        self.dir_modes.push((p, mode));
        Ok(())
    }

    fn file(&mut self, rel: &str, data: &mut impl Read, mode: u32) -> Result<()> {
        self.file_with(rel, mode, |f, p| {
            io::copy(data, f)
                .map(drop)
                .map_err(|e| ArchiveError::from_io(format!("writing {}", p.display()), e))
        })
    }

    /// Creates `rel` (never through a symlink), lets `write` fill it, then sets its mode
    /// and syncs it.
    pub(crate) fn file_with(
        &mut self,
        rel: &str,
        mode: u32,
        write: impl FnOnce(&mut fs::File, &Path) -> Result<()>,
    ) -> Result<()> {
        let p = self.prepare_parent(rel)?;
        // create_new: O_EXCL also refuses to follow an existing (dangling) symlink
        let mut f = fs::File::create_new(&p).ctx(|| format!("creating {}", p.display()))?;
        write(&mut f, &p)?;
        f.set_permissions(fs::Permissions::from_mode(mode & 0o777))
            .ctx(|| format!("chmod {}", p.display()))?;
        f.sync_data().ctx(|| format!("syncing {}", p.display()))?;
        Ok(())
    }

    pub(crate) fn link(&mut self, rel: &str, target: &str, hard: bool) -> Result<()> {
        let p = self.prepare_parent(rel)?;
        if hard {
            // target was checked to be an earlier regular file we wrote ourselves
            let src = self.prepare_parent(target)?;
            fs::hard_link(&src, &p).ctx(|| format!("hard-linking {}", p.display()))
        } else {
            std::os::unix::fs::symlink(target, &p)
                .ctx(|| format!("creating symlink {}", p.display()))
        }
    }

    /// Apply directory modes and fsync directories so the rename publishes durable data.
    pub(crate) fn finish(self) -> Result<()> {
        for (p, mode) in self.dir_modes.iter().rev() {
            fs::set_permissions(p, fs::Permissions::from_mode(mode & 0o777))
                .ctx(|| format!("chmod {}", p.display()))?;
        }
        let mut dirs: Vec<&Path> = self.dir_modes.iter().map(|(p, _)| p.as_path()).collect();
        dirs.push(&self.root);
        for d in dirs {
            fs::File::open(d)
                .and_then(|f| f.sync_all())
                .ctx(|| format!("syncing {}", d.display()))?;
        }
        Ok(())
    }
}
