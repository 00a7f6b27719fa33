//! Webhooks: server started, stopped, failed or crashed, player joined or left, POSTed to
//! Discord (a chat message) or any HTTP endpoint (the event as JSON).
//!
//! Only this appliance's own events are sent (each event is produced by exactly one
//! appliance, so a fleet notifies once). The lifecycle never waits for a webhook: events
//! reach each hook through a bounded queue that drops (and counts) what a hook cannot
//! keep up with, and a failing delivery is retried with backoff by the hook's own task.

use std::time::Duration;

use prometheus::IntCounterVec;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, warn};

use crate::config::{WebhookConfig, WebhookFormat};
use warden_lifecycle::events::{Event, EventKind};

/// Events a hook gets when its config lists none.
pub const DEFAULT_EVENTS: [&str; 6] = [
    "server_started",
    "server_stopped",
    "server_failed",
    "server_crashed",
    "player_joined",
    "player_left",
];
/// Events waiting per hook before new ones are dropped.
const QUEUE: usize = 1000;
/// Waits between attempts; one attempt more than waits.
const BACKOFF: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
];
const TIMEOUT: Duration = Duration::from_secs(5);

/// Starts one task per hook and a dispatcher feeding them from `events`.
pub fn spawn(
    hooks: Vec<WebhookConfig>,
    mut events: broadcast::Receiver<Event>,
    deliveries: IntCounterVec,
) {
    if hooks.is_empty() {
        return;
    }
    let mut queues = Vec::new();
    for hook in hooks {
        let (tx, rx) = mpsc::channel(QUEUE);
        let wanted: Vec<String> = if hook.events.is_empty() {
            DEFAULT_EVENTS.iter().map(|s| s.to_string()).collect()
        } else {
            hook.events.clone()
        };
        tokio::spawn(deliver(hook, rx, deliveries.clone()));
        queues.push((tx, wanted));
    }
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "webhooks fell behind; events dropped");
                    deliveries.with_label_values(&["dropped"]).inc_by(n);
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let name = event.name();
            for (tx, wanted) in &queues {
                if wanted.contains(&name) && tx.try_send(event.clone()).is_err() {
                    deliveries.with_label_values(&["dropped"]).inc();
                }
            }
        }
    });
}

async fn deliver(hook: WebhookConfig, mut rx: mpsc::Receiver<Event>, deliveries: IntCounterVec) {
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(3))
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(url = %redact(&hook.url), error = %e, "webhook disabled: no HTTP client");
            return;
        }
    };
    while let Some(event) = rx.recv().await {
        let body = payload(hook.format, &event);
        let mut attempt = 0;
        loop {
            let result = client.post(&hook.url).json(&body).send().await;
            let why = match result {
                Ok(r) if r.status().is_success() => {
                    deliveries.with_label_values(&["delivered"]).inc();
                    debug!(url = %redact(&hook.url), event = %event.name(), "webhook delivered");
                    break;
                }
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            let Some(wait) = BACKOFF.get(attempt) else {
                warn!(url = %redact(&hook.url), event = %event.name(), %why, "webhook dropped after retries");
                deliveries.with_label_values(&["dropped"]).inc();
                break;
            };
            deliveries.with_label_values(&["retried"]).inc();
            debug!(url = %redact(&hook.url), %why, "webhook failed; retrying");
            tokio::time::sleep(*wait).await;
            attempt += 1;
        }
    }
}

/// The body for `format`: a Discord message, or the event itself with its name.
pub fn payload(format: WebhookFormat, e: &Event) -> serde_json::Value {
    if format == WebhookFormat::Discord {
        let icon = match (e.kind, e.name().as_str()) {
            (EventKind::PlayerJoined, _) => "➕",
            (EventKind::PlayerLeft, _) => "➖",
            (_, "server_started") => "🟢",
            (_, "server_stopped") => "💤",
            (_, "server_failed")
            | (_, "server_crashed")
            | (_, "backup_failed")
            | (_, "node_down") => "🔴",
            (_, "backup_taken") | (_, "backup_restored") | (_, "server_recovered") => "💾",
            _ => "ℹ️",
        };
        return json!({
            "username": "Warden",
            "content": format!("{icon} {}", e.describe()),
            "allowed_mentions": {"parse": []},
        });
    }
    let mut v = serde_json::to_value(e).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.insert("event".into(), json!(e.name()));
    }
    v
}

/// Webhook URLs carry their secret (Discord's token is in the path): log the host only.
fn redact(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or("").to_string()
}
