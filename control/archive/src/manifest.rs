//! The manifest is the contract between archive and restore: it says exactly which bytes the
//! archive must contain, so a copy can be proven good before the node copy is deleted.
//!
//! # Format (`<prefix>/manifest.json`, version 1)
//!
//! ```json
//! {
//!   "version": 1,
//!   "created_unix": 1767225600,
//!   "zstd_level": 3,
//!   "archive": {
//!     "object": "data.tar.zst",
//!     "format": "tar+zstd",
//!     "bytes": 123456,
//!     "sha256": "<hex sha256 of the stored (compressed) object>"
//!   },
//!   "total_file_bytes": 104857600,
//!   "entries": [
//!     { "path": "world", "kind": "dir", "mode": 493 },
//!     { "path": "world/level.dat", "kind": "file", "mode": 420,
//!       "size": 1234, "sha256": "<hex sha256 of the file's contents>" },
//!     { "path": "latest.log", "kind": "symlink", "target": "logs/latest.log" },
//!     { "path": "copy.dat", "kind": "hardlink", "target": "world/level.dat" }
//!   ]
//! }
//! ```
//!
//! * `path`: `/`-separated, relative, no `.`/`..` segments; exactly the tar entry path
//!   (for `archive_tar`, including Docker's top-level directory, e.g. `data/world/...`).
//! * `entries` are in tar order; every tar entry has exactly one manifest entry and vice versa.
//! * `size`/`sha256` are present for `file` entries only. `target` for links only: a
//!   symlink's target as stored (relative, must stay inside the tree); a hardlink's target is
//!   the path of an earlier `file` entry.
//! * Readers must reject a `version` they do not know.

use serde::{Deserialize, Serialize};

pub const MANIFEST_VERSION: u32 = 1;
pub const DATA_OBJECT: &str = "data.tar.zst";
pub const MANIFEST_OBJECT: &str = "manifest.json";
pub const FORMAT: &str = "tar+zstd";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub created_unix: u64,
    pub zstd_level: i32,
    pub archive: ArchiveObject,
    pub total_file_bytes: u64,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveObject {
    /// Object name relative to the prefix (always [`DATA_OBJECT`] in version 1).
    pub object: String,
    pub format: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    #[serde(default)]
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Manifest {
    /// Regular files only (what "per-file sha256" is about).
    pub fn files(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.kind == EntryKind::File)
    }
}
