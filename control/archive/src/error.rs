//! One error type for the whole crate, so the lifecycle code can tell "the copy is bad"
//! (`Verification`, `UnsafePath`) apart from "the copy could not be read" (`Io`, `Store`).

use std::path::PathBuf;

/// Everything that can go wrong while archiving, verifying or restoring.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("archive store error on `{key}`: {source}")]
    Store {
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("object `{key}` not found in archive store")]
    NotFound { key: String },

    #[error("invalid archive key `{key}`: {reason}")]
    InvalidKey { key: String, reason: String },

    /// The stored copy does not match its manifest: the archive must not be trusted.
    #[error("verification failed for `{path}`: expected {expected}, got {got}")]
    Verification {
        path: String,
        expected: String,
        got: String,
    },

    /// A tar entry would land outside the target directory (or write through a symlink).
    #[error("unsafe path in archive: `{path}`: {reason}")]
    UnsafePath { path: String, reason: String },

    #[error("unsupported entry `{path}`: {reason}")]
    Unsupported { path: String, reason: String },

    #[error("invalid manifest `{key}`: {reason}")]
    Manifest { key: String, reason: String },

    #[error("restore target `{}` already exists and is not an empty directory", path.display())]
    TargetNotEmpty { path: PathBuf },

    #[error("invalid archive store configuration: {0}")]
    Config(String),

    #[error("background archive task failed: {0}")]
    Task(String),

    /// No backup below `prefix` verified (each one tried is listed with why it failed).
    #[error("no backup in `{prefix}` could be restored: {tried}")]
    NoUsableBackup { prefix: String, tried: String },
}

pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

impl ArchiveError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ArchiveError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Attach a human-readable "while ..." to I/O errors without a closure at each call site.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| ArchiveError::io(context(), e))
    }
}

impl ArchiveError {
    /// Errors surfacing from the sync tar/zstd pipeline arrive as `io::Error`.
    pub(crate) fn from_io(context: impl Into<String>, e: std::io::Error) -> Self {
        ArchiveError::io(context, e)
    }
}
