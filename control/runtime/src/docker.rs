//! A game server as a Docker container, driven through the daemon's API (bollard).
//!
//! The world lives in a named volume, never in the container, so a container can be removed
//! and recreated (new image, new memory limit) without touching data, and the volume can be
//! streamed out for archiving and back in for restoring. Containers always use host
//! networking: bridge networks are forbidden on Warden nodes, and servers bind their own
//! ports on the host.
//!
//! There is no event subscription: the lifecycle polls [`Runtime::running`] (one inspect,
//! a few milliseconds on the local socket), which also survives daemon restarts and missed
//! events without any resynchronisation logic.

mod archive;
mod client;
mod discover;
pub mod leftovers;
mod spec;

use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{ContainerInspectResponse, HealthStatusEnum, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    StopContainerOptionsBuilder,
};
use tokio::io::AsyncRead;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::rcon::Rcon;
use crate::{DataLocation, Runtime, RuntimeError};

pub use archive::DataReader;
pub use client::{DockerClient, DockerEndpoint};
pub use discover::{
    discover, DiscoveredServer, HOST_LABEL, MEMORY_LABEL, PORT_LABEL, SLEEP_AFTER_LABEL,
};
pub use spec::{DockerSpec, FLEET_LABEL, MANAGED_LABEL, SERVER_LABEL, SPEC_LABEL};

/// Bound for ordinary API calls (inspect, create, start, remove).
pub const DEFAULT_CALL_LIMIT: Duration = Duration::from_secs(30);
/// An archive transfer fails if no bytes move for this long.
pub const DEFAULT_ARCHIVE_IDLE: Duration = Duration::from_secs(60);
/// Bound for each RCON exchange during a graceful stop.
const RCON_LIMIT: Duration = Duration::from_secs(5);

pub struct DockerRuntime {
    client: DockerClient,
    spec: DockerSpec,
    archive_idle: Duration,
    /// A container someone else created (found through labels): Warden starts and stops
    /// it but never creates, replaces or deletes it or its data.
    adopted: bool,
    /// An image set at run time (a warm-swap upgrade) in place of the spec's.
    image: parking_lot::Mutex<Option<String>>,
}

impl DockerRuntime {
    /// Rejects an invalid spec up front, so every later call can trust it.
    pub fn new(client: DockerClient, spec: DockerSpec) -> Result<Self, RuntimeError> {
        spec.validate()?;
        Ok(Self {
            client,
            spec,
            archive_idle: DEFAULT_ARCHIVE_IDLE,
            adopted: false,
            image: parking_lot::Mutex::new(None),
        })
    }

    /// Drives an existing container found through its labels (see [`discover`]).
    pub fn adopt(client: DockerClient, found: &DiscoveredServer) -> Result<Self, RuntimeError> {
        let volume = format!("{}-adopted", found.container);
        let mut rt = Self::new(
            client,
            DockerSpec::new(&found.container, &found.image, volume),
        )?;
        rt.adopted = true;
        Ok(rt)
    }

    /// Connects to `endpoint` with [`DEFAULT_CALL_LIMIT`] and wraps the result.
    pub async fn connect(
        endpoint: &DockerEndpoint,
        spec: DockerSpec,
    ) -> Result<Self, RuntimeError> {
        let client = DockerClient::connect(endpoint, DEFAULT_CALL_LIMIT).await?;
        Self::new(client, spec)
    }

    pub fn with_archive_idle(mut self, idle: Duration) -> Self {
        self.archive_idle = idle;
        self
    }

    pub fn spec(&self) -> &DockerSpec {
        &self.spec
    }

    pub fn client(&self) -> &DockerClient {
        &self.client
    }

    /// The spec with the run-time image, if one was set.
    fn effective_spec(&self) -> std::borrow::Cow<'_, DockerSpec> {
        match self.image.lock().clone() {
            Some(image) => std::borrow::Cow::Owned(DockerSpec {
                image,
                ..self.spec.clone()
            }),
            None => std::borrow::Cow::Borrowed(&self.spec),
        }
    }

    fn name(&self) -> &str {
        &self.spec.container
    }

    /// The container as the daemon sees it; `None` if it does not exist.
    pub async fn inspect(&self) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        let what = format!("inspect container {}", self.name());
        let r = self
            .client
            .call_raw(
                &what,
                self.client.limit,
                self.client.docker.inspect_container(self.name(), None),
            )
            .await?;
        match r {
            Ok(info) => Ok(Some(info)),
            Err(e) if client::status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(self.client.error(&what, e)),
        }
    }

    /// The image's own healthcheck: `Some(true)` healthy, `Some(false)` starting or
    /// unhealthy, `None` when the image defines none or the container does not exist.
    pub async fn docker_health(&self) -> Result<Option<bool>, RuntimeError> {
        let status = self
            .inspect()
            .await?
            .and_then(|i| i.state)
            .and_then(|s| s.health)
            .and_then(|h| h.status);
        Ok(match status {
            Some(HealthStatusEnum::HEALTHY) => Some(true),
            Some(HealthStatusEnum::STARTING | HealthStatusEnum::UNHEALTHY) => Some(false),
            _ => None,
        })
    }

    async fn ensure_volume(&self) -> Result<(), RuntimeError> {
        let req = VolumeCreateRequest {
            name: Some(self.spec.volume.clone()),
            // The container's own labels that say who made it for what (fleet, server), so
            // the collector can tell an orphaned volume from a live one.
            labels: Some(
                self.spec
                    .labels
                    .iter()
                    .filter(|(k, _)| *k == SERVER_LABEL || *k == FLEET_LABEL)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .chain([(MANAGED_LABEL.to_string(), "true".to_string())])
                    .collect(),
            ),
            ..Default::default()
        };
        // Creating an existing local volume is a no-op that returns it.
        self.client
            .call(
                &format!("create volume {}", self.spec.volume),
                self.client.docker.create_volume(req),
            )
            .await
            .map(drop)
    }

    /// Makes sure the container exists and matches the spec, without starting it. A stopped
    /// Warden-made container from an older spec is replaced (its data is in the volume);
    /// a running one is left alone until its next start, and containers Warden did not
    /// create (adopted through labels) are never replaced.
    async fn ensure_container(&self) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        let spec = self.effective_spec();
        if let Some(info) = self.inspect().await? {
            let running = is_running(&info);
            let labels = info.config.as_ref().and_then(|c| c.labels.as_ref());
            let managed = labels
                .and_then(|l| l.get(MANAGED_LABEL))
                .map(String::as_str)
                == Some("true");
            let current = labels.and_then(|l| l.get(SPEC_LABEL)).cloned();
            let wanted = spec.fingerprint();
            if !managed || current.as_deref() == Some(wanted.as_str()) {
                return Ok(Some(info));
            }
            if running {
                warn!(
                    container = self.name(),
                    "container differs from its spec; it is replaced at its next start"
                );
                return Ok(Some(info));
            }
            info!(
                container = self.name(),
                "replacing container from an older spec (data stays in its volume)"
            );
            self.remove_container().await?;
        }
        if self.adopted {
            return Err(RuntimeError::Other(format!(
                "container {} no longer exists (it was adopted through its labels, so Warden does not recreate it)",
                self.name()
            )));
        }
        self.ensure_volume().await?;
        let what = format!("create container {} from {}", self.name(), spec.image);
        let opts = CreateContainerOptionsBuilder::default()
            .name(self.name())
            .build();
        let r = self
            .client
            .call_raw(
                &what,
                self.client.limit,
                self.client
                    .docker
                    .create_container(Some(opts), spec.create_body()),
            )
            .await?;
        match r {
            Ok(_) => {
                info!(container = self.name(), image = %spec.image, "container created");
                Ok(None)
            }
            // Someone (a concurrent start) created it first: same name, same spec.
            Err(e) if client::status_of(&e) == Some(409) => Ok(None),
            Err(e) if client::status_of(&e) == Some(404) => Err(RuntimeError::Other(format!(
                "docker at {}: {what}: image {} is not on this node (pull or load it first): {e}",
                self.client.endpoint, spec.image
            ))),
            Err(e) => Err(self.client.error(&what, e)),
        }
    }

    async fn remove_container(&self) -> Result<(), RuntimeError> {
        let what = format!("remove container {}", self.name());
        // Not forced: a running container here means the caller's view is wrong.
        let opts = RemoveContainerOptionsBuilder::default()
            .force(false)
            .build();
        let r = self
            .client
            .call_raw(
                &what,
                self.client.limit,
                self.client.docker.remove_container(self.name(), Some(opts)),
            )
            .await?;
        match r {
            Ok(()) => Ok(()),
            Err(e) if client::status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.client.error(&what, e)),
        }
    }

    /// Archive operations need a quiescent world: a running server rewrites region files
    /// while they are being read.
    async fn stopped_container(&self, purpose: &str) -> Result<(), RuntimeError> {
        if let Some(info) = self.ensure_container().await? {
            if is_running(&info) {
                return Err(RuntimeError::Other(format!(
                    "container {} is running; stop it before {purpose}",
                    self.name()
                )));
            }
        }
        Ok(())
    }

    /// Streams the data directory out as a tar whose entries are relative to it
    /// (`./world/level.dat`). Never buffered whole; fails if Docker stalls for the idle limit.
    pub async fn export_data(&self) -> Result<DataReader, RuntimeError> {
        self.stopped_container("exporting its data").await?;
        archive::export(
            &self.client,
            self.name(),
            &self.spec.data_path_in_container,
            self.archive_idle,
        )
        .await
    }

    /// Unpacks a tar (plain, gzip, bzip2 or xz) into the data directory, creating the
    /// container (stopped) and its volume if needed. Existing files with the same names
    /// are overwritten; others are kept.
    pub async fn import_data<R>(&self, tar: R) -> Result<(), RuntimeError>
    where
        R: AsyncRead + Send + 'static,
    {
        self.stopped_container("importing data").await?;
        archive::import(
            &self.client,
            self.name(),
            &self.spec.data_path_in_container,
            tar,
            self.archive_idle,
        )
        .await
    }

    /// Whether the data volume exists (an archived server has none).
    pub async fn has_data(&self) -> Result<bool, RuntimeError> {
        let what = format!("inspect volume {}", self.spec.volume);
        let r = self
            .client
            .call_raw(
                &what,
                self.client.limit,
                self.client.docker.inspect_volume(&self.spec.volume),
            )
            .await?;
        match r {
            Ok(_) => Ok(true),
            Err(e) if client::status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.client.error(&what, e)),
        }
    }

    /// Deletes the container and its volume. Irreversible: the lifecycle calls this only
    /// after the archive was read back and verified.
    pub async fn remove_data(&self) -> Result<(), RuntimeError> {
        if self.adopted {
            return Err(RuntimeError::Other(format!(
                "container {} was adopted through its labels; Warden never deletes its data",
                self.name()
            )));
        }
        if self.inspect().await?.as_ref().is_some_and(is_running) {
            return Err(RuntimeError::Other(format!(
                "container {} is running; refusing to delete its data",
                self.name()
            )));
        }
        self.remove_container().await?;
        let what = format!("remove volume {}", self.spec.volume);
        let opts = RemoveVolumeOptionsBuilder::default().force(false).build();
        let r = self
            .client
            .call_raw(
                &what,
                self.client.limit,
                self.client
                    .docker
                    .remove_volume(&self.spec.volume, Some(opts)),
            )
            .await?;
        match r {
            Ok(()) => {
                info!(container = self.name(), volume = %self.spec.volume, "container and volume removed");
                Ok(())
            }
            Err(e) if client::status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.client.error(&what, e)),
        }
    }

    /// `save-all` then `stop` over RCON. Best effort: a server that does not answer is
    /// still stopped by Docker afterwards, so failures are only logged.
    async fn rcon_stop(&self, addr: &str, password: &str, limit: Duration) {
        let mut rcon = match Rcon::connect(addr, password, limit).await {
            Ok(r) => r,
            Err(e) => {
                warn!(container = self.name(), error = %e, "RCON unavailable; stopping through Docker only");
                return;
            }
        };
        if let Err(e) = rcon.command("save-all").await {
            warn!(container = self.name(), error = %e, "RCON save-all failed");
        }
        // The server may close the connection before answering `stop`; that is success.
        match rcon.command("stop").await {
            Ok(_) => debug!(container = self.name(), "RCON stop sent"),
            Err(e) => debug!(container = self.name(), error = %e, "RCON stop (connection ended)"),
        }
    }
}

fn is_running(info: &ContainerInspectResponse) -> bool {
    info.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn start(&self) -> Result<(), RuntimeError> {
        if let Some(info) = self.ensure_container().await? {
            if is_running(&info) {
                return Ok(());
            }
        }
        let what = format!("start container {}", self.name());
        // bollard reports 304 (already started) as success.
        self.client
            .call(&what, self.client.docker.start_container(self.name(), None))
            .await?;
        info!(container = self.name(), "container started");
        Ok(())
    }

    async fn stop(&self, timeout: Duration) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + timeout;
        match self.inspect().await? {
            Some(info) if is_running(&info) => {}
            _ => return Ok(()),
        }
        if let Some((addr, password)) = &self.spec.rcon {
            self.rcon_stop(addr, password, RCON_LIMIT.min(timeout / 2))
                .await;
        }
        // Docker sends SIGTERM, waits `t` seconds, then SIGKILL; the server has already
        // been told to stop over RCON, so SIGTERM only repeats the request.
        let secs = deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            .clamp(1, i32::MAX as u64);
        let wait = Duration::from_secs(secs) + self.client.limit;
        let what = format!("stop container {}", self.name());
        let opts = StopContainerOptionsBuilder::default()
            .t(secs as i32)
            .build();
        let docker = self.client.patient(wait);
        let r = self
            .client
            .call_raw(&what, wait, docker.stop_container(self.name(), Some(opts)))
            .await?;
        match r {
            Ok(()) => {}
            Err(e) if client::status_of(&e) == Some(404) => return Ok(()),
            Err(e) => return Err(self.client.error(&what, e)),
        }
        info!(container = self.name(), "container stopped");
        Ok(())
    }

    async fn running(&self) -> Result<bool, RuntimeError> {
        Ok(self.inspect().await?.as_ref().is_some_and(is_running))
    }

    fn data(&self) -> DataLocation {
        DataLocation::Volume(self.spec.volume.clone())
    }

    fn set_image(&self, image: &str) -> Result<String, RuntimeError> {
        if self.adopted {
            return Err(RuntimeError::Other(format!(
                "container {} was adopted through its labels; Warden does not change its image",
                self.name()
            )));
        }
        let mut probe = self.spec.clone();
        probe.image = image.to_string();
        probe.validate()?;
        let previous = self.effective_spec().image.clone();
        *self.image.lock() = Some(image.to_string());
        Ok(previous)
    }

    async fn healthy(&self) -> Result<Option<bool>, RuntimeError> {
        self.docker_health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "daemon" that accepts connections and never answers: every call must still return,
    /// with an error naming the daemon.
    #[tokio::test]
    async fn a_silent_daemon_is_unreachable_not_a_hang() {
        let dir = std::env::temp_dir().join(format!("warden-docker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("silent.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let endpoint = format!("unix://{}", sock.display());
        let docker =
            bollard::Docker::connect_with_unix(&endpoint, 60, bollard::API_DEFAULT_VERSION)
                .unwrap();
        let client =
            DockerClient::from_docker(docker, endpoint.clone(), Duration::from_millis(300));
        let rt = DockerRuntime::new(client, DockerSpec::new("warden-x", "img", "warden-x-data"))
            .unwrap();
        let t = std::time::Instant::now();
        for r in [
            rt.running().await.map(drop),
            rt.start().await,
            rt.stop(Duration::from_millis(10)).await,
        ] {
            match r {
                Err(RuntimeError::Unreachable(msg)) => assert!(msg.contains(&endpoint), "{msg}"),
                other => panic!("expected Unreachable, got {other:?}"),
            }
        }
        assert!(t.elapsed() < Duration::from_secs(5));

        let missing = DockerClient::connect(
            &DockerEndpoint::Socket(dir.join("absent.sock").display().to_string()),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(missing, RuntimeError::Unreachable(ref m) if m.contains("absent.sock")),
            "{missing}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
