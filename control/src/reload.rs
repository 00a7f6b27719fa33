//! Config reload: on SIGHUP and whenever the file changes.
//!
//! A reload parses and checks the whole file first; only a config that passes every check
//! replaces the running snapshot. A bad edit logs the file, line and hint and changes
//! nothing, so a typo never takes routing down.
//!
//! Two more guards keep an edit in progress from taking routing down:
//! - the file is only used once it has settled: two reads [`SETTLE`] apart must agree (an
//!   editor writing in place leaves the file empty or cut short for a moment);
//! - a reload that would take away every server and route the file defined is refused
//!   unless the new file says `allow_empty = true` (an empty file that did settle is far
//!   more likely a botched write than an intent).
//!
//! Servers defined at run time (Docker labels, the API) are routed alongside the file's,
//! with the file as it was last accepted: a change there never rereads a file mid-write.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
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
/// Two reads this far apart must agree before the file is used.
const SETTLE: Duration = Duration::from_millis(300);
/// A file still changing after this many settle rounds (~6 s) is left for the next change.
const SETTLE_ROUNDS: u32 = 20;

/// The file's modification time and length: a change in either means "read it again".
type Stamp = Option<(SystemTime, u64)>;

#[derive(Clone)]
pub struct Reloader {
    path: PathBuf,
    edge: Arc<Edge>,
    /// Listen addresses can't change without an upgrade; warn if an edit tries.
    listen: Vec<String>,
    /// Servers defined outside the file (Docker labels, the control API), by source,
    /// routed alongside the file's.
    dynamic: Arc<parking_lot::Mutex<BTreeMap<&'static str, Vec<config::Discovered>>>>,
    /// The file's text as last accepted (what is being served).
    accepted: Arc<parking_lot::Mutex<String>>,
    /// Servers plus routes the accepted file defines.
    file_routes: Arc<AtomicUsize>,
}

/// Why a file was not used.
enum Refusal {
    /// Unreadable, or it kept changing.
    Read(String),
    /// It would route nothing where the running file routes something.
    Empty { had: usize },
    /// It fails a check (the message names file, line and hint).
    Invalid(config::ConfigError),
}

impl Reloader {
    /// `text` and `cfg` are the file as read and checked at start.
    pub fn new(path: PathBuf, edge: Arc<Edge>, cfg: &config::Config, text: String) -> Self {
        Self {
            path,
            edge,
            listen: cfg.listen_addrs(),
            dynamic: Default::default(),
            accepted: Arc::new(parking_lot::Mutex::new(text)),
            file_routes: Arc::new(AtomicUsize::new(cfg.servers.len() + cfg.routes.len())),
        }
    }

    fn stamp(&self) -> Stamp {
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    /// Routes `found` as everything `source` ("docker", "api") defines, from now on
    /// (with the file as last accepted).
    pub fn set_dynamic(&self, source: &'static str, found: Vec<config::Discovered>) -> bool {
        self.dynamic.lock().insert(source, found);
        let text = self.accepted.lock().clone();
        let applied = self.apply(&text);
        if let Err(r) = &applied {
            self.refused(r);
        }
        applied.is_ok()
    }

    /// Reads the file once it has settled and swaps it in if it is valid. Returns whether
    /// it was applied, and the file's stamp from just before the read that was used.
    pub async fn reload(&self) -> (bool, Stamp) {
        let (text, stamp) = match self.read_settled().await {
            Ok(read) => read,
            Err(why) => {
                self.refused(&Refusal::Read(why));
                return (false, self.stamp());
            }
        };
        match self.apply(&text) {
            Ok(n) => {
                self.edge.metrics.reloads.with_label_values(&["ok"]).inc();
                info!(servers = n, "config reloaded");
                (true, stamp)
            }
            Err(r) => {
                self.refused(&r);
                (false, stamp)
            }
        }
    }

    /// The file's text once two reads [`SETTLE`] apart agree (and its stamp did not move).
    async fn read_settled(&self) -> Result<(String, Stamp), String> {
        let read = || {
            std::fs::read_to_string(&self.path)
                .map_err(|e| config::ConfigError::io(&self.path, e).to_string())
        };
        for _ in 0..SETTLE_ROUNDS {
            let before = self.stamp();
            let first = read()?;
            tokio::time::sleep(SETTLE).await;
            let second = read()?;
            if first == second && self.stamp() == before {
                return Ok((second, before));
            }
        }
        Err(format!(
            "{} kept changing for {:?}; not reloaded (write a new file and rename it into place)",
            self.path.display(),
            SETTLE * SETTLE_ROUNDS
        ))
    }

    /// Checks `text` (with the run-time servers) and swaps it in; the number of servers.
    fn apply(&self, text: &str) -> Result<usize, Refusal> {
        let c = config::parse(&self.path, text).map_err(Refusal::Invalid)?;
        let routes = c.servers.len() + c.routes.len();
        let had = self.file_routes.load(Ordering::Relaxed);
        if routes == 0 && had > 0 && !c.allow_empty {
            return Err(Refusal::Empty { had });
        }
        let found: Vec<config::Discovered> =
            self.dynamic.lock().values().flatten().cloned().collect();
        let snapshot = c
            .snapshot_with(&self.path, text, &found)
            .map_err(Refusal::Invalid)?;
        if c.listen_addrs() != self.listen {
            warn!("edge.listen changed; new listeners need a binary upgrade (see README), old ones stay");
        }
        let n = snapshot.table.servers().len();
        self.edge.swap(snapshot);
        self.file_routes.store(routes, Ordering::Relaxed);
        *self.accepted.lock() = text.to_owned();
        Ok(n)
    }

    /// Logs why and counts `warden_config_reloads_total{result="error"}`.
    fn refused(&self, r: &Refusal) {
        match r {
            Refusal::Read(why) => error!("config reload failed: {why}"),
            Refusal::Empty { had } => error!(
                "config reload refused, still serving the previous config: {} defines no servers \
                 or routes, which would take down all {had} the running config routes (an editor \
                 caught mid-write leaves an empty file)\n  hint: to really route nothing from \
                 the file, put `allow_empty = true` at its top",
                self.path.display()
            ),
            Refusal::Invalid(e) => {
                error!("config reload rejected, still serving the previous config:\n{e}")
            }
        }
        self.edge
            .metrics
            .reloads
            .with_label_values(&["error"])
            .inc();
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
                    last = self.reload().await.1;
                }
                _ = tick.tick() => {
                    let now = self.stamp();
                    if now.is_some() && now != last {
                        last = self.reload().await.1;
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
