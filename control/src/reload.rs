//! Config reload: on SIGHUP and whenever the file changes.
//!
//! A reload parses and checks the whole file first; only a config that passes every check
//! replaces the running snapshot. A bad edit logs the file, line and hint and changes
//! nothing, so a typo never takes routing down.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};
use warden_proxy::Edge;

use crate::config;

/// How often the file's modification time is checked.
const POLL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Reloader {
    pub path: PathBuf,
    pub edge: Arc<Edge>,
    /// Listen addresses can't change without an upgrade; warn if an edit tries.
    pub listen: Vec<String>,
    /// Servers defined outside the file (Docker labels, the control API), by source,
    /// routed alongside the file's.
    pub dynamic: Arc<parking_lot::Mutex<BTreeMap<&'static str, Vec<config::Discovered>>>>,
}

impl Reloader {
    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    /// Routes `found` as everything `source` ("docker", "api") defines, from now on
    /// (with the file's current contents).
    pub fn set_dynamic(&self, source: &'static str, found: Vec<config::Discovered>) -> bool {
        self.dynamic.lock().insert(source, found);
        self.reload()
    }

    /// Loads the file and swaps it in if it is valid. Returns whether it was applied.
    pub fn reload(&self) -> bool {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                error!(
                    "config reload failed: {}",
                    config::ConfigError::io(&self.path, e)
                );
                self.edge
                    .metrics
                    .reloads
                    .with_label_values(&["error"])
                    .inc();
                return false;
            }
        };
        let built = config::parse(&self.path, &text).and_then(|c| {
            let found: Vec<config::Discovered> =
                self.dynamic.lock().values().flatten().cloned().collect();
            Ok((
                c.snapshot_with(&self.path, &text, &found)?,
                c.listen_addrs(),
            ))
        });
        match built {
            Ok((snapshot, listen)) => {
                if listen != self.listen {
                    warn!("edge.listen changed; new listeners need a binary upgrade (see README), old ones stay");
                }
                let n = snapshot.table.servers().len();
                self.edge.swap(snapshot);
                self.edge.metrics.reloads.with_label_values(&["ok"]).inc();
                info!(servers = n, "config reloaded");
                true
            }
            Err(e) => {
                error!("config reload rejected, still serving the previous config:\n{e}");
                self.edge
                    .metrics
                    .reloads
                    .with_label_values(&["error"])
                    .inc();
                false
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGHUP; file changes still reload");
                None
            }
        };
        let mut last = self.stamp();
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending::<()>().await } } => {
                    info!("SIGHUP: reloading config");
                    self.reload();
                    last = self.stamp();
                }
                _ = tick.tick() => {
                    let now = self.stamp();
                    if now.is_some() && now != last {
                        last = now;
                        self.reload();
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
