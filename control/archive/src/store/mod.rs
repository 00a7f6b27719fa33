//! Where archives live. The lifecycle only needs a handful of whole-object operations, so
//! the trait is deliberately small; both implementations stream and never hold an object
//! in memory.

mod local;
mod paced;
pub mod s3;
mod s3_uploads;

pub use local::LocalDir;
pub use paced::Paced;
pub use s3::{S3Config, S3};

use crate::error::{ArchiveError, Result};
use async_trait::async_trait;
use tokio::io::AsyncRead;

/// A boxed byte stream, the currency of [`ArchiveStore`].
pub type ByteStream = Box<dyn AsyncRead + Send + Unpin>;

/// What `put` stored: computed from the bytes as they were streamed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub bytes: u64,
    /// Lower-case hex sha256 of the object.
    pub sha256: String,
}

/// What `head` can tell without reading the object (stores keep no sha256 for us).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub bytes: u64,
    /// When it was last written, if the store says (the collector's safety age).
    pub modified_unix_ms: Option<u64>,
}

/// A multipart upload that was started and neither completed nor aborted: its parts sit in
/// the store (and are billed) until it is aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The full key the upload would have created (below the bucket root, not the listing
    /// prefix).
    pub key: String,
    /// The store's upload id.
    pub id: String,
    /// When it was started, if the store says.
    pub started_unix_ms: Option<u64>,
}

/// Whole-object storage for archives.
///
/// Keys are `/`-separated relative paths (`servers/lobby/data.tar.zst`), validated by
/// [`validate_key`]. `put` replaces atomically: readers see the old object or the complete
/// new one, never a partial upload (LocalDir: rename; S3: PUT / CompleteMultipartUpload).
/// If the reader fails, `put` fails and nothing is committed.
#[async_trait]
pub trait ArchiveStore: Send + Sync {
    async fn put(&self, key: &str, reader: ByteStream) -> Result<ObjectInfo>;
    /// Err(`NotFound`) if the object does not exist.
    async fn get(&self, key: &str) -> Result<ByteStream>;
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;
    /// Idempotent: deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<()>;
    /// All keys below `prefix/` (recursively), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// Unfinished multipart uploads of keys below `prefix` ("" = the whole store), sorted by
    /// key. Like [`list`](Self::list), `prefix` is a directory: `lobby` means `lobby/...`.
    /// This includes uploads still in progress in some other process: only abort ones older
    /// than any `put` can take. Stores without multipart uploads have none.
    async fn unfinished_uploads(&self, prefix: &str) -> Result<Vec<Upload>> {
        let _ = prefix;
        Ok(Vec::new())
    }

    /// Aborts one, deleting its parts; aborting an upload that no longer exists succeeds.
    async fn abort_upload(&self, upload: &Upload) -> Result<()> {
        let _ = upload;
        Ok(())
    }
}

/// Keys map onto file paths (LocalDir) and S3 paths; reject anything that could escape the
/// store root or mean different things to the two.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(ArchiveError::InvalidKey {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() {
        return bad("empty key");
    }
    if key.contains('\0') || key.contains('\\') {
        return bad("contains NUL or backslash");
    }
    for seg in key.split('/') {
        match seg {
            "" => return bad("empty path segment (leading, trailing or double `/`)"),
            "." | ".." => return bad("`.` or `..` segment"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_key;

    #[test]
    fn keys() {
        assert!(validate_key("a/b/data.tar.zst").is_ok());
        assert!(validate_key("région/ü.json").is_ok());
        for bad in ["", "/a", "a/", "a//b", "../a", "a/./b", "a/..", "a\\b"] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
    }
}
