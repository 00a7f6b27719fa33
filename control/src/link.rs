//! Starting the edge↔node link from `[link]`: the certificates are loaded once (a bad
//! file stops the start with its path), the edge keeps warm links to every node that
//! offers one (the fleet's node records say which), and a node with `[node] link =
//! "quic"` accepts links on `[link] listen` and lands their players on its servers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::warn;
use warden_lifecycle::Engine;
use warden_link::dial::Dialer;
use warden_link::listen::Listener;
use warden_link::metrics::LinkMetrics;
use warden_link::tls::{Material, Tls};
use warden_proxy::landing::Landing;
use warden_proxy::Edge;

use crate::config::{Config, LinkSection};

/// How often the set of warm links follows the fleet.
const KEEP_EVERY: Duration = Duration::from_secs(2);

pub fn start(
    section: &LinkSection,
    cfg: &Config,
    edge: &Arc<Edge>,
    engine: Option<Arc<Engine>>,
    registry: &prometheus::Registry,
) -> anyhow::Result<()> {
    let tls = Tls::load(&Material {
        ca: section.ca.clone(),
        cert: section.cert.clone(),
        key: section.key.clone(),
        crl: section.crl.clone(),
    })
    .context("loading the link's certificates ([link])")?;
    let metrics = LinkMetrics::new().context("link metrics")?;
    metrics
        .register(registry)
        .context("registering link metrics")?;
    // The link's own thread: its packets are never queued behind the control plane's work
    // (store polls, backups); it lives as long as the process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("warden-link")
        .enable_all()
        .build()
        .context("starting the link's runtime")?;
    let runtime = rt.handle().clone();
    std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));
    let _in = runtime.enter();
    let dialer = Dialer::new(&tls, metrics.clone()).context("starting the link's dialer")?;
    edge.use_link(dialer.clone());
    if let Some(engine) = engine {
        runtime.spawn(async move {
            loop {
                dialer.keep(&engine.fleet_links());
                tokio::time::sleep(KEEP_EVERY).await;
            }
        });
    }
    if cfg.link_port().is_some() {
        let listen = section
            .listen
            .as_ref()
            .and_then(|l| l.get_ref().parse().ok())
            .context("link.listen is not an address")?;
        let landing = Landing::new(edge.clone(), metrics.clone());
        runtime.spawn(async move {
            let mut told = false;
            loop {
                // While an upgraded-from process still holds the port, wait for it.
                match Listener::bind(listen, &tls, metrics.clone()) {
                    Ok(l) => return l.run(landing).await,
                    Err(e) if !told => {
                        warn!(error = %e, "link port busy; retrying every second");
                        told = true;
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    Ok(())
}
