//! Archive storage for sleeping servers (issue 3, DESIGN.md "Server lifecycle"): stream the
//! data out, tar + zstd it into an [`ArchiveStore`] with a [`Manifest`] (sha256 per file),
//! read it back and verify it — and only then may the caller delete the node copy. Restore
//! verifies against the manifest while extracting into a fresh directory that is renamed
//! into place only when everything matched.
//!
//! Every step is idempotent: re-archiving over a partial or stale archive replaces it, and
//! verifying a missing or partial archive fails with an error instead of a false "ok".
//!
//! Modules: `archive` (directory or tar stream → tar → zstd → store, building the
//! manifest), [`manifest`] (what a restore must find), `verify` (read back, verify, restore),
//! `hashing` (hash while streaming), `paths` (untrusted tar paths made safe), `pipe` (the
//! blocking encoder to async bridge), [`store`] (local directory, S3, pacing) and `error`.
//!
//! [`backup`] keeps incremental, content-addressed snapshots of a running server's world in
//! the same storage (issue 14), with the same rule: nothing unverified is ever restored.
//!
//! ```no_run
//! # async fn demo() -> Result<(), warden_archive::ArchiveError> {
//! use warden_archive::*;
//! let store = LocalDir::new("/var/lib/warden/archive")?;
//! let dir = std::path::Path::new("/srv/lobby");
//! let manifest = archive_dir(&store, "servers/lobby", dir, &ArchiveOptions::default()).await?;
//! // verified: now the node copy may go
//! std::fs::remove_dir_all(dir).ok();
//! restore_dir(&store, "servers/lobby", dir).await?;
//! # let _ = manifest; Ok(()) }
//! ```

mod archive;
pub mod backup;
mod error;
mod hashing;
pub mod manifest;
mod paths;
mod pipe;
pub mod store;
mod verify;
mod walk;

pub use archive::{archive_dir, archive_tar, ArchiveOptions};
pub use error::{ArchiveError, Result};
pub use hashing::sha256_hex;
pub use manifest::{Entry, EntryKind, Manifest};
pub use store::{
    ArchiveStore, ByteStream, LocalDir, ObjectInfo, ObjectMeta, Paced, S3Config, Upload, S3,
};
pub use verify::{load_manifest, restore_dir, restore_tar_stream, verify};

/// Key of the compressed tar for an archive prefix.
pub fn data_key(prefix: &str) -> String {
    archive::data_key(prefix)
}

/// Key of the manifest for an archive prefix.
pub fn manifest_key(prefix: &str) -> String {
    archive::manifest_key(prefix)
}
