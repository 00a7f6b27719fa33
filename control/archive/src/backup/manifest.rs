//! A snapshot's manifest: everything a restore needs and everything retention and the
//! API show, checked as a whole before any of it is trusted.
//!
//! # Format (`<prefix>/snapshots/<id>.json`, version 1)
//!
//! A header line, then the JSON body it vouches for:
//!
//! ```text
//! warden-backup-snapshot v1 sha256=<hex sha256 of the body>
//! {"version":1,"id":"20260102T030405Z","server":"lobby","created_unix_ms":…,
//!  "note":"scheduled","chunk_bytes":1048576,"zstd_level":3,
//!  "stats":{"files":…,"bytes":…,"read_bytes":…,"new_blobs":…,"new_raw_bytes":…,
//!           "new_stored_bytes":…,"reused_files":…},
//!  "entries":[{"path":"world","kind":"dir","mode":493},
//!             {"path":"world/level.dat","kind":"file","mode":420,"size":1234,
//!              "chunks":["<sha256>"],"stat":{"mtime_ns":…,"ctime_ns":…,"ino":…}},
//!             {"path":"latest.log","kind":"symlink","mode":511,"target":"logs/latest.log"}]}
//! ```
//!
//! * Paths as in archive manifests: relative, `/`-separated, no `.`/`..`, parents first.
//! * A file of `size` bytes has `ceil(size / chunk_bytes)` chunks, all `chunk_bytes` long
//!   but the last; each names the blob `blobs/<first two hex>/<sha256>`.
//! * `stat` is what the file looked like when read (lets the next backup skip it when
//!   unchanged); restores ignore it.
//! * `hardlink` entries (from Docker tar streams) name an earlier `file` entry.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

use super::id::is_id;
use crate::error::{ArchiveError, Result};
use crate::hashing::sha256_hex;
use crate::manifest::EntryKind;
use crate::paths::{check_symlink_target, normalize_entry_path};

pub const SNAPSHOT_VERSION: u32 = 1;
const MAGIC: &str = "warden-backup-snapshot";
/// A manifest is small (~100 bytes per MiB of world); anything far larger is not ours.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 256 << 20;
/// Bounds on `chunk_bytes` a reader accepts (a blob is held in memory while checked).
const MIN_CHUNK: u64 = 4 << 10;
pub(crate) const MAX_CHUNK: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub id: String,
    pub server: String,
    pub created_unix_ms: u64,
    /// Why it was taken: `scheduled`, `at stop`, `operator`, `before restore of …`.
    pub note: String,
    pub chunk_bytes: u64,
    pub zstd_level: i32,
    pub stats: Stats,
    pub entries: Vec<SnapEntry>,
}

/// What a snapshot holds and what taking it cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Regular files, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// Bytes read and hashed (files not skipped as unchanged).
    pub read_bytes: u64,
    /// Blobs this snapshot added to the store, their bytes before and after compression.
    pub new_blobs: u64,
    pub new_raw_bytes: u64,
    pub new_stored_bytes: u64,
    /// Files taken over from the previous snapshot without reading them (unchanged).
    pub reused_files: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapEntry {
    pub path: String,
    pub kind: EntryKind,
    #[serde(default)]
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<FileStat>,
    /// Owner (restored into Docker volumes; a directory restore keeps Warden's user).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A file's identity when it was read: equal on the next backup means "unchanged".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

impl Snapshot {
    /// Regular files only.
    pub fn files(&self) -> impl Iterator<Item = &SnapEntry> {
        self.entries.iter().filter(|e| e.kind == EntryKind::File)
    }

    /// Every blob it references (with repeats), in restore order.
    pub fn chunks(&self) -> impl Iterator<Item = &str> {
        self.files()
            .flat_map(|e| e.chunks.iter().map(String::as_str))
    }

    /// The length of chunk `i` of a file of `size` bytes.
    pub(crate) fn chunk_len(&self, size: u64, i: usize) -> u64 {
        let start = self.chunk_bytes.saturating_mul(i as u64);
        size.saturating_sub(start).min(self.chunk_bytes)
    }
}

pub(crate) fn is_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The stored form: header line + JSON body.
pub(crate) fn encode(s: &Snapshot) -> Result<Vec<u8>> {
    let body = serde_json::to_vec(s).map_err(|e| ArchiveError::Manifest {
        key: s.id.clone(),
        reason: e.to_string(),
    })?;
    let mut out =
        format!("{MAGIC} v{SNAPSHOT_VERSION} sha256={}\n", sha256_hex(&body)).into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Parses and checks a stored manifest read from `key`, which must be snapshot `id`.
pub(crate) fn decode(key: &str, id: &str, bytes: &[u8]) -> Result<Snapshot> {
    let bad = |reason: String| ArchiveError::Manifest {
        key: key.to_string(),
        reason,
    };
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no header line".into()))?;
    let (head, body) = (&bytes[..nl], &bytes[nl + 1..]);
    let head = std::str::from_utf8(head).map_err(|_| bad("header is not UTF-8".into()))?;
    let want = format!("{MAGIC} v{SNAPSHOT_VERSION} sha256=");
    let Some(sha) = head.strip_prefix(&want) else {
        return Err(bad(format!(
            "header `{}` is not `{want}…` (another version, or not a snapshot)",
            head.chars().take(80).collect::<String>()
        )));
    };
    let got = sha256_hex(body);
    if got != sha {
        return Err(ArchiveError::Verification {
            path: key.to_string(),
            expected: format!("sha256 {sha}"),
            got: format!("sha256 {got}"),
        });
    }
    let s: Snapshot = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if s.version != SNAPSHOT_VERSION {
        return Err(bad(format!("unsupported version {}", s.version)));
    }
    if s.id != id || !is_id(&s.id) {
        return Err(bad(format!("holds snapshot `{}`, not `{id}`", s.id)));
    }
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&s.chunk_bytes) {
        return Err(bad(format!("chunk size {} out of range", s.chunk_bytes)));
    }
    check_entries(&s).map_err(|e| match e {
        ArchiveError::Manifest { reason, .. } => bad(reason),
        other => other,
    })?;
    Ok(s)
}

/// Everything a restore relies on: safe, unique paths with their parents first, chunk
/// lists that fit the sizes, links that stay inside the tree.
fn check_entries(s: &Snapshot) -> Result<()> {
    let bad = |reason: String| ArchiveError::Manifest {
        key: s.id.clone(),
        reason,
    };
    let mut seen: HashMap<&str, EntryKind> = HashMap::new();
    for e in &s.entries {
        let norm = normalize_entry_path(Path::new(&e.path))?;
        if norm.as_deref() != Some(e.path.as_str()) {
            return Err(bad(format!("path `{}` is not in normal form", e.path)));
        }
        for (i, _) in e.path.match_indices('/') {
            match seen.get(&e.path[..i]) {
                Some(EntryKind::Dir) => {}
                Some(k) => {
                    return Err(ArchiveError::UnsafePath {
                        path: e.path.clone(),
                        reason: format!("parent `{}` is a {k:?}, not a directory", &e.path[..i]),
                    })
                }
                None => return Err(bad(format!("`{}` comes before its parent", e.path))),
            }
        }
        match e.kind {
            EntryKind::File => {
                let size = e
                    .size
                    .ok_or_else(|| bad(format!("file `{}` has no size", e.path)))?;
                let want = size.div_ceil(s.chunk_bytes);
                if e.chunks.len() as u64 != want {
                    return Err(bad(format!(
                        "file `{}` of {size} bytes lists {} chunks, not {want}",
                        e.path,
                        e.chunks.len()
                    )));
                }
                if let Some(c) = e.chunks.iter().find(|c| !is_sha(c)) {
                    return Err(bad(format!("chunk `{c}` of `{}` is not a sha256", e.path)));
                }
            }
            EntryKind::Dir => {}
            EntryKind::Symlink => {
                let t = e
                    .target
                    .as_deref()
                    .ok_or_else(|| bad(format!("symlink `{}` has no target", e.path)))?;
                check_symlink_target(&e.path, Path::new(t))?;
            }
            EntryKind::Hardlink => {
                let t = e.target.as_deref().unwrap_or_default();
                if seen.get(t) != Some(&EntryKind::File) {
                    return Err(ArchiveError::UnsafePath {
                        path: e.path.clone(),
                        reason: format!("hard link target `{t}` is not an earlier regular file"),
                    });
                }
            }
        }
        if seen.insert(e.path.as_str(), e.kind).is_some() {
            return Err(bad(format!("`{}` appears twice", e.path)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            id: "20260102T030405Z".into(),
            server: "s".into(),
            created_unix_ms: 1,
            note: "test".into(),
            chunk_bytes: 4096,
            zstd_level: 3,
            stats: Stats::default(),
            entries: vec![
                SnapEntry {
                    path: "w".into(),
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    size: None,
                    target: None,
                    chunks: vec![],
                    stat: None,
                    uid: 0,
                    gid: 0,
                },
                SnapEntry {
                    path: "w/f".into(),
                    kind: EntryKind::File,
                    mode: 0o644,
                    size: Some(5000),
                    target: None,
                    chunks: vec!["a".repeat(64), "b".repeat(64)],
                    stat: None,
                    uid: 1000,
                    gid: 1000,
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_refuses_tampering() {
        let s = snap();
        let bytes = encode(&s).unwrap();
        assert_eq!(decode("k", &s.id, &bytes).unwrap(), s);
        // a flipped byte in the body
        let mut t = bytes.clone();
        let at = t.len() - 3;
        t[at] ^= 1;
        assert!(matches!(
            decode("k", &s.id, &t),
            Err(ArchiveError::Verification { .. })
        ));
        // stored under another id
        assert!(decode("k", "20260102T030406Z", &bytes).is_err());
        // structurally wrong, even with a correct hash
        for broken in [
            {
                let mut b = snap();
                b.entries[1].chunks.pop();
                b
            },
            {
                let mut b = snap();
                b.entries[1].path = "x/f".into();
                b
            },
            {
                let mut b = snap();
                b.entries[1].path = "w/../../f".into();
                b
            },
            {
                let mut b = snap();
                b.entries[1].chunks[0] = "../x".into();
                b
            },
            {
                let mut b = snap();
                b.chunk_bytes = 1;
                b
            },
        ] {
            let enc = encode(&broken).unwrap();
            assert!(decode("k", &broken.id, &enc).is_err(), "{broken:?}");
        }
    }
}
