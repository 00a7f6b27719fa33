//! Building the lifecycle engine from the config: store, archive storage, runtimes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use warden_archive::{ArchiveStore, LocalDir, Paced, S3Config, S3};
use warden_proxy::sessions::Sessions;
use warden_runtime::{DockerEndpoint, DockerRuntime, DockerSpec, ProcessRuntime, Runtime};

use crate::config::{ArchiveKind, Config, RconConfig, RuntimeConfig};
use crate::lifecycle::{Engine, LifecycleSettings, ManagedServer, ServerData};

/// Opens the store and starts the engine for every server with a `runtime`. Returns None
/// when no server is managed, none can be discovered and the API is off (pure routing
/// needs neither store nor engine).
pub async fn engine(
    cfg: &Config,
    sessions: Sessions,
    ticket_key: Option<Arc<[u8]>>,
) -> anyhow::Result<Option<(Arc<Engine>, Arc<dyn ArchiveStore>)>> {
    let wanted = cfg.servers.iter().any(|s| s.runtime.is_some())
        || !cfg.discovery.docker.is_empty()
        || cfg.api.is_some();
    if !wanted {
        return Ok(None);
    }
    // `warden config check` refuses a store without what its kind needs.
    let store_cfg = cfg.store.store_config().map_err(anyhow::Error::msg)?;
    let store = warden_store::open(&store_cfg)
        .await
        .context("opening the state store")?;
    let archive = archive_store(cfg)?;
    let mut servers = Vec::new();
    for s in &cfg.servers {
        let Some(runtime) = &s.runtime else {
            continue;
        };
        let spec = ServerSpecParts {
            id: s.id.get_ref(),
            backend: s.backend.get_ref(),
            proxy_protocol: s.proxy_protocol,
            runtime,
            rcon: s.rcon.as_ref(),
            sleep_after: s.sleep_after,
            archive_after: s.archive_after,
            start_timeout: s.start_timeout,
            stop_timeout: s.stop_timeout,
            memory_gb: s.memory_gb,
            node_backends: &s.node_backends,
        };
        servers.push(managed_server(&spec, archive.clone()).await?);
    }
    let settings = LifecycleSettings {
        hold: cfg.lifecycle.hold,
        appliance: cfg
            .lifecycle
            .appliance
            .clone()
            .unwrap_or_else(|| "warden".into()),
        anteroom: ticket_key.map(|key| {
            let mut a = warden_anteroom::AnteroomSettings::new(key);
            a.max_wait = cfg.anteroom.max_wait;
            a
        }),
        wakes_per_source_per_hour: cfg.lifecycle.wakes_per_source_per_hour,
        wakes_per_server_per_hour: cfg.lifecycle.wakes_per_server_per_hour,
        ..LifecycleSettings::default()
    };
    let engine = Engine::start(servers, store, sessions, settings)
        .await
        .context("starting the lifecycle engine")?;
    Ok(Some((engine, archive)))
}

/// What a managed server is made of, whether it comes from the config file or the API.
pub struct ServerSpecParts<'a> {
    pub id: &'a str,
    pub backend: &'a str,
    pub proxy_protocol: bool,
    pub runtime: &'a RuntimeConfig,
    pub rcon: Option<&'a RconConfig>,
    pub sleep_after: Duration,
    pub archive_after: Duration,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
    pub memory_gb: f64,
    pub node_backends: &'a std::collections::BTreeMap<String, String>,
}

/// Builds the engine's view of one server: its runtime (a process or a container), its
/// data, RCON and archive storage.
pub async fn managed_server(
    s: &ServerSpecParts<'_>,
    archive: Arc<dyn ArchiveStore>,
) -> anyhow::Result<ManagedServer> {
    let rcon = match s.rcon {
        Some(r) => {
            let password = std::env::var(&r.password_env).with_context(|| {
                format!(
                    "server {}: environment variable {} (RCON password) is not set",
                    s.id, r.password_env
                )
            })?;
            Some((r.address.clone(), password))
        }
        None => None,
    };
    let (runtime, data): (Arc<dyn Runtime>, _) = match s.runtime {
        RuntimeConfig::Process { command, dir } => (
            Arc::new(ProcessRuntime::new(command.clone(), dir.clone())),
            ServerData::Dir(dir.clone()),
        ),
        RuntimeConfig::Docker {
            container,
            image,
            volume,
            cmd,
            env,
            binds,
            socket,
        } => {
            let mut spec = DockerSpec::new(container, image, volume);
            spec.cmd = cmd.clone();
            spec.env = env.clone();
            spec.binds = binds.clone();
            spec.memory_gb = s.memory_gb;
            spec.stop_timeout = s.stop_timeout;
            spec.rcon = rcon.clone();
            let endpoint = socket
                .clone()
                .map(DockerEndpoint::Socket)
                .unwrap_or_default();
            let rt = DockerRuntime::connect(&endpoint, spec)
                .await
                .with_context(|| format!("server {}: docker runtime", s.id))?;
            let rt = Arc::new(rt);
            (rt.clone(), ServerData::Volume(rt))
        }
    };
    Ok(ManagedServer {
        id: s.id.to_string(),
        backend: s.backend.to_string(),
        proxy_protocol: s.proxy_protocol,
        runtime,
        data: Some(data),
        sleep_after: s.sleep_after,
        archive_after: s.archive_after,
        start_timeout: s.start_timeout,
        stop_timeout: s.stop_timeout,
        memory_gb: s.memory_gb,
        archive: Some(archive),
        rcon,
        node_backends: s.node_backends.clone(),
    })
}

/// The configured archive storage: a local directory, or an S3-compatible bucket whose
/// credentials come from the environment variables the config names.
fn archive_store(cfg: &Config) -> anyhow::Result<Arc<dyn ArchiveStore>> {
    let a = &cfg.archive;
    // `warden config check` refuses an archive without what its kind needs.
    let store: Arc<dyn ArchiveStore> = match a.kind.get_ref() {
        ArchiveKind::Local => Arc::new(
            LocalDir::new(a.path.clone())
                .with_context(|| format!("archive directory {}", a.path.display()))?,
        ),
        ArchiveKind::S3 => {
            let keys = a.s3_keys().map_err(anyhow::Error::msg)?;
            let env = |name: &str| {
                std::env::var(name).with_context(|| {
                    format!("environment variable {name} (archive credentials) is not set")
                })
            };
            let mut c = S3Config::new(
                keys.endpoint.to_string(),
                keys.region.to_string(),
                keys.bucket.to_string(),
                env(keys.access_key_env)?,
                env(keys.secret_key_env)?,
            );
            c.path_style = true;
            Arc::new(S3::new(&c).context("configuring S3 archive storage")?)
        }
    };
    Ok(match a.bytes_per_sec().map_err(anyhow::Error::msg)? {
        Some(rate) => Arc::new(Paced::new(store, rate)),
        None => store,
    })
}
