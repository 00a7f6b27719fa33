//! One error type for the whole crate, so the `warden` binary can report any
//! forecast failure (bad file, thin data, API refusal) with its cause intact.

use std::path::PathBuf;

/// Everything that can go wrong in the forecast crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    #[error("model fit failed: {0}")]
    Model(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("Hetzner API returned HTTP {status} ({code}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("HTTP transport: {0}")]
    Http(#[from] reqwest::Error),
    #[error("gave up: {0}")]
    Exhausted(String),
    #[error("chart: {0}")]
    Chart(String),
}

/// Crate-wide result alias.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
