//! Where game servers actually run.
//!
//! The lifecycle engine starts, stops and inspects servers only through [`Runtime`], so
//! the same wake/sleep/archive logic drives a Docker container or a local process.
//!
//! Modules: [`docker`] (a container through the daemon's API, bollard), `process` (a local
//! process in its own process group, its pid in the data directory) and [`rcon`] (the
//! bounded RCON client for graceful stops and warm-swap transfers).

pub mod docker;
mod process;
pub mod rcon;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

pub use docker::{DockerEndpoint, DockerRuntime, DockerSpec};
pub use process::ProcessRuntime;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the runtime is unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Other(String),
}

/// Where a server keeps its world, for archiving and restoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataLocation {
    /// A directory on this node.
    Dir(PathBuf),
    /// A Docker named volume.
    Volume(String),
}

#[async_trait]
pub trait Runtime: Send + Sync {
    /// Launches the server; returns once it was launched (readiness is checked separately).
    /// Starting a running server is not an error.
    async fn start(&self) -> Result<(), RuntimeError>;

    /// Stops gracefully, forcing after `timeout`. Stopping a stopped server is not an error.
    async fn stop(&self, timeout: Duration) -> Result<(), RuntimeError>;

    /// Whether the server's process or container is running right now.
    async fn running(&self) -> Result<bool, RuntimeError>;

    fn data(&self) -> DataLocation;

    /// The runtime's own health verdict, if it has one: `Some(false)` while a Docker
    /// healthcheck says starting or unhealthy. `None` (the default) means "no opinion";
    /// readiness then rests on the status ping alone.
    async fn healthy(&self) -> Result<Option<bool>, RuntimeError> {
        Ok(None)
    }

    /// Runs `image` from the next start on (a warm-swap upgrade); returns the image it
    /// replaces. Runtimes without images refuse.
    fn set_image(&self, image: &str) -> Result<String, RuntimeError> {
        Err(RuntimeError::Other(format!(
            "this runtime has no image to replace with {image}"
        )))
    }
}
