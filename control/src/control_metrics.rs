//! The control plane's Prometheus metrics, served with the edge's on `/metrics`: server
//! states, API requests and webhook deliveries (docs/grafana/ charts them).

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use warden_store::ServerState;

use crate::lifecycle::Engine;

pub struct ControlMetrics {
    /// `warden_server_state{server,state}`: 1 for the state a server is in, 0 for the others.
    pub server_state: IntGaugeVec,
    pub api_requests: IntCounterVec,
    pub webhook_deliveries: IntCounterVec,
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
        registry.register(Box::new(server_state.clone()))?;
        registry.register(Box::new(api_requests.clone()))?;
        registry.register(Box::new(webhook_deliveries.clone()))?;
        Ok(ControlMetrics {
            server_state,
            api_requests,
            webhook_deliveries,
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
