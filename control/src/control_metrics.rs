//! The control plane's Prometheus metrics, served with the edge's on `/metrics`: server
//! states, API requests, HTTP listener refusals, webhook deliveries and backups
//! (docs/grafana/ charts them).

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use warden_store::ServerState;

use warden_api::http_guard::HttpMetrics;
use warden_lifecycle::Engine;

pub struct ControlMetrics {
    /// `warden_server_state{server,state}`: 1 for the state a server is in, 0 for the others.
    pub server_state: IntGaugeVec,
    pub api_requests: IntCounterVec,
    pub webhook_deliveries: IntCounterVec,
    /// `warden_wakes_total{result}`: starts this appliance ran, `ok` or `failed`.
    pub wakes: IntCounterVec,
    /// `warden_wake_duration_seconds`: from leaving sleep (or the archive) to ready.
    pub wake_duration: Histogram,
    /// The API's and the metrics listener's refusals and connections.
    pub http: HttpMetrics,
    /// `warden_wake_requests_total{cause,result}`: who asked for a wake (player, api,
    /// migrate, peer) and what came of it (started, running, refused_source,
    /// refused_server, unproven).
    pub wake_requests: IntCounterVec,
    /// The fleet's nodes as this appliance reads them from the store.
    pub nodes: NodeGauges,
    /// `warden_capacity_waits_total`: wakes that found no room on their node and waited.
    pub capacity_waits: IntCounter,
    /// `warden_backups_total{result}`: backups taken (`ok`, `failed`) and restored
    /// (`restored`, `corrupt`: one that did not verify and was skipped).
    pub backups: IntCounterVec,
    /// `warden_backup_age_seconds{server}`: the age of each server's newest backup (the
    /// play time a lost node would cost).
    pub backup_age: GaugeVec,
    /// `warden_recoveries_total`: servers this appliance brought back after their node
    /// died.
    pub recoveries: IntCounter,
    /// `warden_gc_deleted_total{kind}`: orphans the collector deleted.
    pub gc_deleted: IntCounterVec,
    /// `warden_gc_orphans{kind}`: orphans the last collection found (deleted or not).
    pub gc_orphans: IntGaugeVec,
}

/// `warden_node_up`, `warden_node_capacity_bytes`, `warden_node_allocated_bytes` and
/// `warden_node_servers`, by node.
#[derive(Clone)]
pub struct NodeGauges {
    pub up: IntGaugeVec,
    pub capacity: GaugeVec,
    pub allocated: GaugeVec,
    pub servers: IntGaugeVec,
}

impl NodeGauges {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(name, help);
        let up = IntGaugeVec::new(
            opts(
                "warden_node_up",
                "1 while a node's lease runs and it is not dead, 0 otherwise",
            ),
            &["node"],
        )?;
        let capacity = GaugeVec::new(
            opts(
                "warden_node_capacity_bytes",
                "Memory a node offers its game servers",
            ),
            &["node"],
        )?;
        let allocated = GaugeVec::new(
            opts(
                "warden_node_allocated_bytes",
                "Memory of the servers a node runs (as of its last lease renewal)",
            ),
            &["node"],
        )?;
        let servers = IntGaugeVec::new(
            opts("warden_node_servers", "Servers a node owns, running or not"),
            &["node"],
        )?;
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(capacity.clone()))?;
        registry.register(Box::new(allocated.clone()))?;
        registry.register(Box::new(servers.clone()))?;
        Ok(NodeGauges {
            up,
            capacity,
            allocated,
            servers,
        })
    }
}

impl ControlMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let server_state = IntGaugeVec::new(
            Opts::new(
                "warden_server_state",
                "1 for the lifecycle state each managed server is in, 0 for the others",
            ),
            &["server", "state"],
        )?;
        let api_requests = IntCounterVec::new(
            Opts::new(
                "warden_api_requests_total",
                "Control API requests, by method and HTTP status",
            ),
            &["method", "status"],
        )?;
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "warden_webhook_deliveries_total",
                "Webhook attempts, by result (delivered, retried, dropped)",
            ),
            &["result"],
        )?;
        let wakes = IntCounterVec::new(
            Opts::new(
                "warden_wakes_total",
                "Server starts run by this appliance, by result",
            ),
            &["result"],
        )?;
        let wake_duration = Histogram::with_opts(
            HistogramOpts::new(
                "warden_wake_duration_seconds",
                "Time from a server leaving sleep or the archive to being ready",
            )
            .buckets(vec![
                0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ]),
        )?;
        let wake_requests = IntCounterVec::new(
            Opts::new(
                "warden_wake_requests_total",
                "Wake requests, by cause (player, api, migrate, peer) and result (started, \
                 running, refused_source, refused_server, unproven)",
            ),
            &["cause", "result"],
        )?;
        let capacity_waits = IntCounter::new(
            "warden_capacity_waits_total",
            "Wakes that found no room on their node and waited for capacity",
        )?;
        registry.register(Box::new(capacity_waits.clone()))?;
        let recoveries = IntCounter::new(
            "warden_recoveries_total",
            "Servers recovered on this node from their newest backup after their node died",
        )?;
        registry.register(Box::new(recoveries.clone()))?;
        let gc_deleted = IntCounterVec::new(
            Opts::new(
                "warden_gc_deleted_total",
                "Orphans the collector deleted, by kind (archive, backup, aside, temp)",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(gc_deleted.clone()))?;
        let gc_orphans = IntGaugeVec::new(
            Opts::new(
                "warden_gc_orphans",
                "Orphans the last collection found, deleted or kept, by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(gc_orphans.clone()))?;
        let backups = IntCounterVec::new(
            Opts::new(
                "warden_backups_total",
                "Backups taken (ok, failed) and restored (restored, corrupt: skipped because \
                 it did not verify), by result",
            ),
            &["result"],
        )?;
        let backup_age = GaugeVec::new(
            Opts::new(
                "warden_backup_age_seconds",
                "Age of each managed server's newest backup",
            ),
            &["server"],
        )?;
        registry.register(Box::new(backups.clone()))?;
        registry.register(Box::new(backup_age.clone()))?;
        registry.register(Box::new(wake_requests.clone()))?;
        registry.register(Box::new(wakes.clone()))?;
        registry.register(Box::new(wake_duration.clone()))?;
        registry.register(Box::new(server_state.clone()))?;
        registry.register(Box::new(api_requests.clone()))?;
        registry.register(Box::new(webhook_deliveries.clone()))?;
        Ok(ControlMetrics {
            server_state,
            api_requests,
            webhook_deliveries,
            wakes,
            wake_duration,
            http: HttpMetrics::register(registry)?,
            wake_requests,
            nodes: NodeGauges::register(registry)?,
            capacity_waits,
            backups,
            backup_age,
            recoveries,
            gc_deleted,
            gc_orphans,
        })
    }
}

/// Keeps `warden_server_state` current (once a second; scrapes are rarer).
pub async fn track_states(engine: Arc<Engine>, gauge: IntGaugeVec) {
    let mut known: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let ids = engine.ids();
        for gone in known.iter().filter(|id| !ids.contains(id)) {
            for s in ServerState::ALL {
                let _ = gauge.remove_label_values(&[gone, s.as_str()]);
            }
        }
        for id in &ids {
            if let Some(v) = engine.view(id) {
                for s in ServerState::ALL {
                    gauge
                        .with_label_values(&[id, s.as_str()])
                        .set(i64::from(s == v.state));
                }
            }
        }
        known = ids;
    }
}

/// Keeps `warden_backup_age_seconds` current (every 5 s) for the servers whose newest
/// backup is known.
pub async fn track_backup_age(engine: Arc<Engine>, gauge: GaugeVec) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut known: Vec<String> = Vec::new();
    loop {
        tick.tick().await;
        let now = warden_store::now_unix_ms();
        let mut seen = Vec::new();
        for id in engine.ids() {
            if let Some(at) = engine.view(&id).and_then(|v| v.last_backup_unix_ms) {
                gauge
                    .with_label_values(&[&id])
                    .set(now.saturating_sub(at) as f64 / 1000.0);
                seen.push(id);
            }
        }
        for gone in known.iter().filter(|id| !seen.contains(id)) {
            let _ = gauge.remove_label_values(&[gone]);
        }
        known = seen;
    }
}

/// Counts wakes and their durations from this appliance's events: a wake begins when a
/// server leaves `sleeping` or `archived` and ends at `active` (ok) or `failed`/back to
/// `archived` (failed).
pub async fn track_wakes(
    mut events: tokio::sync::broadcast::Receiver<warden_lifecycle::events::Event>,
    wakes: IntCounterVec,
    duration: Histogram,
) {
    use warden_lifecycle::events::EventKind;
    let mut began: std::collections::HashMap<String, u64> = Default::default();
    loop {
        let e = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        if e.kind != EventKind::Transition {
            continue;
        }
        match (e.from.as_deref(), e.to.as_deref()) {
            (Some("sleeping" | "archived"), Some("starting" | "restoring")) => {
                began.insert(e.server.clone(), e.at_unix_ms);
            }
            (_, Some(end @ ("active" | "failed" | "archived"))) => {
                if let Some(t0) = began.remove(&e.server) {
                    let ok = end == "active";
                    wakes
                        .with_label_values(&[if ok { "ok" } else { "failed" }])
                        .inc();
                    if ok {
                        duration.observe(e.at_unix_ms.saturating_sub(t0) as f64 / 1000.0);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Keeps the node gauges current from the engine's copy of the fleet (once a second).
pub async fn track_nodes(engine: Arc<Engine>, gauges: NodeGauges) {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let mut known: Vec<String> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let nodes = engine.nodes();
        let now = warden_store::now_unix_ms();
        for gone in known
            .iter()
            .filter(|id| !nodes.iter().any(|n| &n.id == *id))
        {
            let _ = gauges.up.remove_label_values(&[gone]);
            let _ = gauges.capacity.remove_label_values(&[gone]);
            let _ = gauges.allocated.remove_label_values(&[gone]);
            let _ = gauges.servers.remove_label_values(&[gone]);
        }
        for n in &nodes {
            let up = n.live(now) && n.state != warden_store::NodeState::Dead;
            gauges.up.with_label_values(&[&n.id]).set(i64::from(up));
            gauges
                .capacity
                .with_label_values(&[&n.id])
                .set(n.memory_gb * GIB);
            gauges
                .allocated
                .with_label_values(&[&n.id])
                .set(n.allocated_gb * GIB);
            gauges
                .servers
                .with_label_values(&[&n.id])
                .set(i64::from(n.servers));
        }
        known = nodes.into_iter().map(|n| n.id).collect();
    }
}
