//! Building the lifecycle engine from the config: store, archive storage, runtimes.

use std::sync::Arc;

use anyhow::Context;
use warden_archive::{ArchiveStore, LocalDir, Paced, S3Config, S3};
use warden_proxy::sessions::Sessions;
use warden_runtime::docker::{DockerClient, FLEET_LABEL, SERVER_LABEL};
use warden_runtime::{DockerEndpoint, DockerRuntime, DockerSpec, ProcessRuntime, Runtime};

use crate::config::{
    ArchiveKind, Config, FileServers, Managed, RuntimeConfig, RuntimeSpec, ServerSpec,
};
use warden_lifecycle::{Engine, LifecycleSettings, ManagedServer, ServerData};

/// Opens the store and starts the engine for every server with a `runtime`. Returns None
/// when no server is managed, none can be discovered and the API is off (pure routing
/// needs neither store nor engine).
pub async fn engine(
    cfg: &Config,
    file: &FileServers,
    sessions: Sessions,
    ticket_key: Option<Arc<[u8]>>,
    upgrade: bool,
) -> anyhow::Result<Option<(Arc<Engine>, Arc<dyn ArchiveStore>)>> {
    // A shared store makes the appliance a member of a fleet: a node that boots with
    // nothing but its store (a machine the capacity controller bought) joins and runs the
    // servers placed on it.
    let wanted = file.servers.iter().any(|s| s.managed.is_some())
        || !cfg.discovery.docker.is_empty()
        || cfg.api.is_some()
        || cfg.capacity.is_some()
        || *cfg.store.kind.get_ref() == crate::config::StoreKind::Redis;
    if !wanted {
        return Ok(None);
    }
    // `warden config check` refuses a store without what its kind needs.
    let store_cfg = cfg.store.store_config().map_err(anyhow::Error::msg)?;
    let store = warden_store::open(&store_cfg)
        .await
        .context("opening the state store")?;
    let fleet = warden_store::fleet_id(store.as_ref())
        .await
        .context("reading the fleet's id from the state store")?;
    let archive = archive_store(cfg)?;
    let mut servers = Vec::new();
    for s in &file.servers {
        if let Some(m) = &s.managed {
            servers.push(managed_server(s, m, Some(&archive), Some(&fleet), None).await?);
        }
    }
    let node = cfg.node_settings(&file.servers, upgrade);
    if node.roles.contains(&warden_store::NodeRole::Node) {
        match (check_local(&node.address), &cfg.node.address) {
            (Ok(()), _) => {}
            (Err(why), Some(_)) => anyhow::bail!(
                "node.address {why}: edges would reach this node's servers there. Set [node] \
                 address to this machine's IP (or host name) on the network the edges use"
            ),
            (Err(why), None) => tracing::warn!(
                "the node address taken from the first server's backend {why}; set [node] address"
            ),
        }
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
        node,
        // `warden config check` refuses a `[backup]` that does not parse.
        backup: cfg.backup.settings().map_err(anyhow::Error::msg)?,
        store_patience: cfg.store.store_patience(),
        gc_min_age: cfg.gc.min_age,
        fleet,
        ..LifecycleSettings::default()
    };
    let engine = Engine::start(servers, store, sessions, settings)
        .await
        .context("starting the lifecycle engine")?;
    Ok(Some((engine, archive)))
}

/// Builds the engine's view of one server: its runtime (a process, a container Warden
/// owns, or one it adopts through `adopt`, its daemon's client), its data, RCON and
/// `archive` storage (never for an adopted container: Warden does not own its data).
/// Containers and volumes Warden makes are labelled with `fleet` and the server's id.
pub async fn managed_server(
    s: &ServerSpec,
    m: &Managed,
    archive: Option<&Arc<dyn ArchiveStore>>,
    fleet: Option<&str>,
    adopt: Option<DockerClient>,
) -> anyhow::Result<ManagedServer> {
    let id = s.id();
    let rcon = match &m.rcon {
        Some(r) => {
            let password = std::env::var(&r.password_env).with_context(|| {
                format!(
                    "server {id}: environment variable {} (RCON password) is not set",
                    r.password_env
                )
            })?;
            Some((r.address.clone(), password))
        }
        None => None,
    };
    let (runtime, data): (Arc<dyn Runtime>, _) = match &m.runtime {
        RuntimeSpec::Owned(RuntimeConfig::Process { command, dir }) => (
            Arc::new(ProcessRuntime::new(command.clone(), dir.clone())),
            Some(ServerData::Dir(dir.clone())),
        ),
        RuntimeSpec::Owned(RuntimeConfig::Docker {
            container,
            image,
            volume,
            cmd,
            env,
            binds,
            socket,
        }) => {
            let mut spec = DockerSpec::new(container, image, volume);
            spec.cmd = cmd.clone();
            spec.env = env.clone();
            spec.binds = binds.clone();
            spec.memory_gb = m.memory_gb;
            spec.stop_timeout = m.stop_timeout;
            spec.rcon = rcon.clone();
            spec.labels.insert(SERVER_LABEL.into(), id.to_string());
            if let Some(fleet) = fleet {
                spec.labels.insert(FLEET_LABEL.into(), fleet.to_string());
            }
            let endpoint = socket
                .clone()
                .map(DockerEndpoint::Socket)
                .unwrap_or_default();
            let rt = DockerRuntime::connect(&endpoint, spec)
                .await
                .with_context(|| format!("server {id}: docker runtime"))?;
            let rt = Arc::new(rt);
            (rt.clone(), Some(ServerData::Volume(rt)))
        }
        RuntimeSpec::Adopted(found) => {
            let client = adopt.context("no connection to the container's daemon")?;
            (Arc::new(DockerRuntime::adopt(client, found)?), None)
        }
    };
    let owned = data.is_some();
    Ok(ManagedServer {
        id: id.to_string(),
        backend: s.route.backend.clone(),
        proxy_protocol: s.route.proxy_protocol,
        runtime,
        data,
        sleep_after: m.sleep_after,
        archive_after: m.archive_after,
        start_timeout: m.start_timeout,
        stop_timeout: m.stop_timeout,
        memory_gb: m.memory_gb,
        archive: archive.filter(|_| owned).cloned(),
        rcon,
        node_backends: m.node_backends.clone(),
        anywhere: m.anywhere,
        node_labels: m.node_labels.clone(),
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

/// Whether `address` (an IP address or a host name) is one of this machine's: a node
/// advertising an address it does not have (a typo, a copy of another node's config) would
/// send every edge's players nowhere. Binding a port on it is the test the kernel answers.
fn check_local(address: &str) -> Result<(), String> {
    use std::net::{IpAddr, TcpListener, ToSocketAddrs};
    let ips: Vec<IpAddr> = match address.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (address, 0)
            .to_socket_addrs()
            .map_err(|e| format!("`{address}` does not resolve ({e})"))?
            .map(|a| a.ip())
            .collect(),
    };
    let mut last = None;
    for ip in &ips {
        match TcpListener::bind((*ip, 0)) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => format!("`{address}` is not an address of this machine ({e})"),
        None => format!("`{address}` resolves to no address"),
    })
}

#[cfg(test)]
mod tests {
    use super::check_local;

    #[test]
    fn only_this_machines_addresses_pass() {
        assert_eq!(check_local("127.0.0.1"), Ok(()));
        assert_eq!(check_local("127.0.0.9"), Ok(()), "all of 127/8 is local");
        assert_eq!(check_local("localhost"), Ok(()));
        // TEST-NET-1: documentation space, never assigned to a machine.
        let e = check_local("192.0.2.1").unwrap_err();
        assert!(e.contains("not an address of this machine"), "{e}");
        let e = check_local("no-such-host.invalid").unwrap_err();
        assert!(e.contains("does not resolve"), "{e}");
    }
}
