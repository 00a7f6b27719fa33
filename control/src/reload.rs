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
//! Servers defined at run time (Docker labels, the API) are routed alongside the file's by
//! the [`Inventory`], which keeps the file as it was last accepted: a change there never
//! reads the file (or its favicons) again. Only a reload reads the file.

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
use crate::inventory::Inventory;

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
    /// Holds the file as last accepted, beside the servers defined at run time.
    inventory: Arc<Inventory>,
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
    /// `cfg` is the file as read and checked at start (the inventory holds its servers).
    pub fn new(
        path: PathBuf,
        edge: Arc<Edge>,
        cfg: &config::Config,
        inventory: Arc<Inventory>,
    ) -> Self {
        Self {
            path,
            edge,
            listen: cfg.listen_addrs(),
            inventory,
        }
    }

    fn stamp(&self) -> Stamp {
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len()))
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

    /// Checks `text` and hands it to the inventory, which routes it with the run-time
    /// servers; the number of servers routed.
    fn apply(&self, text: &str) -> Result<usize, Refusal> {
        let (c, file) = config::check(&self.path, text).map_err(Refusal::Invalid)?;
        let routes = file.servers.len() + file.routes.len();
        let had = self.inventory.file_routes();
        if routes == 0 && had > 0 && !c.allow_empty {
            return Err(Refusal::Empty { had });
        }
        if c.listen_addrs() != self.listen {
            warn!("edge.listen changed; new listeners need a binary upgrade (see README), old ones stay");
        }
        Ok(self.inventory.set_file(file))
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
