//! `warden run`: assembles the appliance from the config and hands it to pingora.
//!
//! pingora provides the process model: one runtime per service, signal handling and the
//! graceful upgrade (`--upgrade` + SIGQUIT hands the listening sockets to a new binary).
//! Warden adds one thing: an old process exits as soon as its last session has ended,
//! instead of always sleeping through the whole grace period.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{ExecutionPhase, Server};
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use tracing::{info, warn};
use warden_proxy::admission::{AlwaysActive, Lifecycle};
use warden_proxy::metrics::Metrics;
use warden_proxy::sessions::Sessions;
use warden_proxy::{Edge, EdgeService};

use crate::catalog::Catalog;
use crate::config;
use crate::control_metrics::ControlMetrics;
use crate::discovery::Discovery;
use crate::inventory::Inventory;
use crate::metrics_http::MetricsHttp;
use crate::reload::Reloader;
use warden_api::http_guard::{Admission, Limits};
use warden_api::ApiContext;

/// Runs the appliance until it is told to stop. Only returns on a startup error.
pub fn run(config_path: &Path, upgrade: bool) -> anyhow::Result<()> {
    // First, before anything opens a descriptor.
    let descriptors = crate::fdlimit::raise();
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let (cfg, file) = config::check(config_path, &text)?;
    let snapshot = crate::inventory::snapshot(&file, &Default::default());
    let upgrade_sock = crate::upgrade_sock::prepare(&cfg, upgrade)?;
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let sessions = Sessions::new(Some(metrics.sessions.clone()));
    // The control plane's own runtime lives as long as the process; pingora's service
    // runtimes come and go with their services.
    let control_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("warden-control")
        .enable_all()
        .build()
        .context("starting the control runtime")?;
    let control = control_rt.handle().clone();
    std::thread::spawn(move || control_rt.block_on(std::future::pending::<()>()));
    let managed =
        file.servers.iter().any(|s| s.managed.is_some()) || !cfg.discovery.docker.is_empty();
    let ticket_key = match (cfg.anteroom.enabled && managed, &cfg.anteroom.key_file) {
        (false, _) => None,
        (true, Some(path)) => Some(crate::ticket_key::load_or_create(path)?),
        (true, None) => Some(crate::ticket_key::load_or_create(
            &cfg.store.path.join("anteroom.key"),
        )?),
    };
    let built = control.block_on(crate::managed::engine(
        &cfg,
        &file,
        sessions.clone(),
        ticket_key.clone(),
        upgrade,
    ))?;
    let (engine, archive) = match built {
        Some((e, a)) => (Some(e), Some(a)),
        None => (None, None),
    };
    let lifecycle: Arc<dyn Lifecycle> = match &engine {
        Some(engine) => {
            control.spawn(engine.clone().run());
            engine.clone()
        }
        None => Arc::new(AlwaysActive),
    };
    let edge = Edge::new(snapshot, metrics.clone(), lifecycle, sessions);
    if let Some(key) = ticket_key {
        edge.set_ticket_key(key);
    }
    edge.loops
        .set_listeners(cfg.own_listeners().into_iter().map(|(_, a)| a).collect());
    cap_at_descriptors(&cfg, &edge, descriptors);
    if let Some(section) = &cfg.link {
        crate::link::start(section, &cfg, &edge, engine.clone(), metrics.registry())?;
    }
    let inventory = Arc::new(Inventory::new(edge.clone(), file));
    let reloader = Reloader::new(
        config_path.to_path_buf(),
        edge.clone(),
        &cfg,
        inventory.clone(),
    );
    let control_metrics =
        ControlMetrics::register(metrics.registry()).context("registering control metrics")?;
    let configured: Vec<String> = cfg.servers.iter().map(|s| s.id.get_ref().clone()).collect();
    if let (Some(engine), Some(archive)) = (&engine, archive) {
        engine.count_wake_requests(control_metrics.wake_requests.clone());
        engine.count_capacity_waits(control_metrics.capacity_waits.clone());
        control.spawn(crate::control_metrics::track_nodes(
            engine.clone(),
            control_metrics.nodes.clone(),
        ));
        engine.count_backups(control_metrics.backups.clone());
        engine.count_recoveries(control_metrics.recoveries.clone());
        engine.count_gc(
            control_metrics.gc_deleted.clone(),
            control_metrics.gc_orphans.clone(),
        );
        control.spawn(crate::control_metrics::track_backup_age(
            engine.clone(),
            control_metrics.backup_age.clone(),
        ));
        let store = engine.store().clone();
        crate::retention::spawn(
            &control,
            store.clone(),
            cfg.store.session_retention,
            metrics.registry(),
        )
        .context("registering retention metrics")?;
        control.spawn(warden_api::admin_socket::serve(
            warden_api::admin_socket::socket_path(&cfg.store.path),
            store.clone(),
        ));
        control.spawn(crate::control_metrics::track_states(
            engine.clone(),
            control_metrics.server_state.clone(),
        ));
        control.spawn(crate::control_metrics::track_wakes(
            engine.subscribe(),
            control_metrics.wakes.clone(),
            control_metrics.wake_duration.clone(),
        ));
        // Subscribe here, on this thread: no event between now and the task's start is lost.
        let events = engine.subscribe();
        let hooks = cfg.webhooks.clone();
        let deliveries = control_metrics.webhook_deliveries.clone();
        control.spawn(async move { crate::webhooks::spawn(hooks, events, deliveries) });
        if let Some(settings) = cfg.capacity.clone() {
            crate::capacity::spawn(&control, settings, engine.clone(), metrics.registry())?;
        }
        // Servers defined through the API live in the store: every appliance of the fleet
        // follows them, with or without an API of its own (a node bought by the capacity
        // controller has none).
        let catalog = Arc::new(Catalog::new(
            store.clone(),
            engine.clone(),
            inventory.clone(),
            archive,
        ));
        control.spawn(catalog.clone().run());
        if let Some(section) = cfg.api.clone() {
            let ctx = Arc::new(ApiContext::new(
                store,
                engine.clone(),
                edge.clone(),
                catalog,
                &section,
                configured.clone(),
                cfg.listen_addrs(),
                control_metrics.api_requests.clone(),
                control_metrics.http.clone(),
            ));
            control.spawn(warden_api::serve(section, ctx));
        }
    }
    if let (Some(engine), false) = (engine, cfg.discovery.docker.is_empty()) {
        control.spawn(
            Discovery {
                daemons: cfg.discovery.docker.clone(),
                interval: cfg.discovery.interval,
                engine,
                inventory,
                configured,
            }
            .run(),
        );
    }

    let threads = match cfg.edge.threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let conf = ServerConf {
        threads,
        upgrade_sock: upgrade_sock.to_string_lossy().into_owned(),
        grace_period_seconds: Some(cfg.edge.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(2),
        // One single-threaded runtime per thread, each with its own poller: a session's
        // sockets and task stay on the thread that took it, so no packet wakes a task
        // across threads. Measured: Warden CPU per login 109 -> 84 µs, logins/s 0.35 ->
        // 0.41× direct (warden-bench, same machine). pingora spreads connections over the
        // threads at random.
        work_stealing: false,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    // In an upgrade, bootstrap waits on the socket for the old process's listeners.
    let restrict = upgrade.then(|| crate::upgrade_sock::Restrict::start(upgrade_sock));
    server.bootstrap();
    if let Some(r) = restrict {
        r.done();
    }

    if cfg
        .node
        .roles
        .get_ref()
        .contains(&warden_store::NodeRole::Edge)
    {
        let edge_svc = EdgeService::new(edge.clone(), cfg.listen_addrs(), threads);
        server.add_service(edge_svc);
    } else {
        info!("node.roles has no \"edge\": no player listener on this appliance");
    }

    if !cfg.metrics.listen.is_empty() {
        let c = &cfg.metrics;
        let limits = Limits {
            max_connections: c.max_connections,
            per_source: c.max_connections_per_source,
            idle_timeout: c.idle_timeout,
            request_timeout: c.request_timeout,
        };
        let mut m = Service::new(
            "metrics".to_string(),
            MetricsHttp {
                metrics: metrics.clone(),
                admission: Admission::new("metrics", limits, control_metrics.http.clone()),
            },
        );
        m.threads = Some(1);
        m.add_tcp(&cfg.metrics.listen);
        server.add_service(m);
    }
    server.add_service(background_service("config reload", reloader));

    exit_when_drained(&server, edge);
    info!(config = %config_path.display(), upgrade, "warden starting");
    server.run_forever()
}

/// Logs the file-descriptor limit and caps the edge's connections below it.
fn cap_at_descriptors(
    cfg: &config::Config,
    edge: &Edge,
    descriptors: std::io::Result<crate::fdlimit::Descriptors>,
) {
    let d = match descriptors {
        Ok(d) => d,
        Err(e) => {
            warn!(error = %e, "cannot read or raise the file-descriptor limit; connections are capped by edge.limits.max_connections only");
            return;
        }
    };
    let api = cfg.api.as_ref().map_or(0, |a| a.max_connections);
    let players = crate::fdlimit::capacity(d.limit, crate::fdlimit::reserve(api));
    edge.set_fd_capacity(players);
    info!(
        was = d.before,
        now = d.limit,
        hard = d.hard,
        players,
        "file-descriptor limit raised: room for `players` players (two descriptors each); the oldest connections still in their handshake are shed to stay below it"
    );
    let max = cfg.edge.limits.max_connections as usize;
    if players < max {
        warn!(
            players,
            max_connections = max,
            "the file-descriptor limit, not edge.limits.max_connections, caps players; raise the hard limit (LimitNOFILE=, ulimit -Hn) to take more"
        );
    }
}

/// Tells systemd (`Type=notify`, node-image/warden.service) that the appliance runs:
/// `READY=1` with this process's pid, so that after a graceful upgrade (`systemctl reload`) the
/// new process becomes the unit's main process. Does nothing without `NOTIFY_SOCKET`.
fn notify_systemd_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message = format!("READY=1\nMAINPID={}\n", std::process::id());
    let sent = std::os::unix::net::UnixDatagram::unbound().and_then(|socket| {
        match path.as_encoded_bytes().strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(message.as_bytes(), &addr)
            }
            None => socket.send_to(message.as_bytes(), &path),
        }
    });
    match sent {
        Ok(_) => info!("told systemd the appliance is ready"),
        Err(e) => warn!(error = %e, "cannot tell systemd the appliance is ready (NOTIFY_SOCKET)"),
    }
}

/// During a graceful shutdown or upgrade, exits once no client connection is left; tells
/// systemd when the server runs.
fn exit_when_drained(server: &Server, edge: Arc<Edge>) {
    let mut phases = server.watch_execution_phase();
    std::thread::spawn(move || loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::Running) => notify_systemd_ready(),
            Ok(ExecutionPhase::ShutdownGracePeriod) => loop {
                let open = edge.open_connections();
                if open == 0 {
                    info!("all sessions ended; exiting before the grace period ends");
                    std::process::exit(0);
                }
                std::thread::sleep(Duration::from_millis(200));
            },
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(_) => return,
        }
    });
}
