//! Starting the edge↔node link from `[link]`: the certificates are loaded once (a bad
//! file stops the start with its path), the edge keeps warm links to every node that
//! offers one (the fleet's node records say which), and a node with `[node] link =
//! "quic"` accepts links on `[link] listen`, lands their players on its servers and tells
//! the edges on each link's control stream how its servers are ([`NodeTell`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tracing::warn;
use warden_lifecycle::Engine;
use warden_link::control::{Showing, Tell};
use warden_link::dial::Dialer;
use warden_link::listen::Listener;
use warden_link::metrics::LinkMetrics;
use warden_link::tls::{Material, Tls};
use warden_proxy::landing::Landing;
use warden_proxy::Edge;

use crate::config::{Config, LinkSection};

/// How often the set of warm links follows the fleet.
const KEEP_EVERY: Duration = Duration::from_secs(2);
/// How often a node looks at its servers for what to tell the edges (a status comes
/// through the status cache, so a server is asked at most once per `status_ttl`).
const SHOW_EVERY: Duration = Duration::from_secs(1);

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
    if let Some(engine) = &engine {
        engine.use_link(dialer.clone());
        let engine = engine.clone();
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
        let tell = engine.map(|e| NodeTell::start(e, edge.clone()));
        runtime.spawn(async move {
            let mut told = false;
            loop {
                // While an upgraded-from process still holds the port, wait for it.
                match Listener::bind(listen, &tls, metrics.clone()) {
                    Ok(l) => {
                        let l = match &tell {
                            Some(t) => l.telling(t.clone()),
                            None => l,
                        };
                        return l.run(landing).await;
                    }
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

/// What this node tells edges on the links' control streams: each server it owns, its
/// state and (while up) its status, refreshed every [`SHOW_EVERY`] and on every event of
/// the engine (a transition shows at once); and the wakes and
/// sleeps edges ask for, done by the engine with the same checks as everywhere else.
pub struct NodeTell {
    engine: Arc<Engine>,
    showing: watch::Sender<Showing>,
}

impl NodeTell {
    pub fn start(engine: Arc<Engine>, edge: Arc<Edge>) -> Arc<dyn Tell> {
        let showing = watch::Sender::new(Showing::default());
        let me = Arc::new(NodeTell {
            engine: engine.clone(),
            showing: showing.clone(),
        });
        let mut events = engine.subscribe();
        tokio::spawn(async move {
            loop {
                if showing.receiver_count() == 0 {
                    // No edge listens: ask no server.
                    tokio::time::sleep(SHOW_EVERY).await;
                    continue;
                }
                let mut now = std::collections::BTreeMap::new();
                for id in engine.owned_ids() {
                    if let Some(shown) = edge.shown(&id).await {
                        now.insert(id, shown);
                    }
                }
                showing.send_if_modified(|old| {
                    let changed = **old != now;
                    if changed {
                        *old = Arc::new(std::mem::take(&mut now));
                    }
                    changed
                });
                // Again after SHOW_EVERY, or at once when a server changes state (a lag
                // in the state would show a woken server as still starting).
                tokio::select! {
                    _ = tokio::time::sleep(SHOW_EVERY) => {}
                    r = events.recv() => {
                        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                            tokio::time::sleep(SHOW_EVERY).await;
                        }
                    }
                }
            }
        });
        me
    }
}

#[async_trait::async_trait]
impl Tell for NodeTell {
    fn showing(&self) -> watch::Receiver<Showing> {
        self.showing.subscribe()
    }

    async fn wake(&self, server: &str) -> Result<(), String> {
        self.engine.wake_for_peer(server).await
    }

    async fn sleep(&self, server: &str, force: bool) -> Result<(), String> {
        self.engine.sleep_for_peer(server, force).await
    }
}
