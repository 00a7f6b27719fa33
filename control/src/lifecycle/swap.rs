//! Warm-swap restart: restart a running server without disconnecting its players.
//!
//! The server is marked `swapping`, so new joins go to the anteroom. Its players are
//! moved there too, with RCON `transfer` (1.20.5+ clients; older ones are told to rejoin
//! shortly). Then the server is stopped gracefully and started again on the same data;
//! once it answers, the anteroom transfers everyone back. Every step is time-bound, and a
//! replacement that does not come up is started once more before the server is marked
//! failed.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{timeout, Instant};
use tracing::{info, warn};
use warden_proxy::status::render::eta_text;
use warden_runtime::rcon::Rcon;
use warden_store::ServerState;

use super::{ready, Engine, Slot};

/// Bound for each RCON exchange (servers are quirky: never wait on one forever).
const RCON_LIMIT: Duration = Duration::from_secs(5);
/// How long transferred players get to leave the old server before it is stopped.
const DRAIN: Duration = Duration::from_secs(10);
/// Waiting for a wake or sleep in progress to finish before swapping.
const BUSY_WAIT: Duration = Duration::from_secs(30);
/// Transfer needs 1.20.5+ (protocol 766).
const MIN_TRANSFER_PROTOCOL: i32 = 766;

/// What a restart did.
#[derive(Debug, Default)]
pub struct SwapReport {
    pub transferred: usize,
    pub told_to_rejoin: usize,
    pub secs: f64,
}

impl Engine {
    /// Restarts server `id` with its players kept in the anteroom meanwhile.
    pub async fn restart(&self, id: &str) -> Result<SwapReport, String> {
        let slot = self
            .slots
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| format!("no managed server `{id}`"))?;
        let started = Instant::now();
        let _busy = timeout(BUSY_WAIT, slot.waking.clone().lock_owned())
            .await
            .map_err(|_| format!("{id} is busy (a wake or sleep did not finish in time)"))?;
        if *slot.state.borrow() != ServerState::Active {
            return Err(format!(
                "{id} is not running ({})",
                slot.state.borrow().as_str()
            ));
        }
        if self.anteroom.is_none() {
            return Err("the anteroom is disabled ([anteroom] enabled = false)".into());
        }
        self.transition(&slot, ServerState::Swapping, "warm-swap restart")
            .await
            .map_err(|e| e.to_string())?;
        let mut report = self.move_players(&slot).await;
        self.drain(&slot).await;
        info!(server = %id, transferred = report.transferred, "warm-swap: stopping the old server");
        if let Err(e) = slot.spec.runtime.stop(slot.spec.stop_timeout).await {
            warn!(server = %id, error = %e, "warm-swap: stop failed; starting again anyway");
        }
        let mut last = String::new();
        for attempt in 1..=2 {
            match self.start_again(&slot).await {
                Ok(()) => {
                    self.transition(&slot, ServerState::Active, "warm-swap: replacement ready")
                        .await
                        .map_err(|e| e.to_string())?;
                    report.secs = started.elapsed().as_secs_f64();
                    info!(server = %id, secs = report.secs, "warm-swap complete");
                    return Ok(report);
                }
                Err(e) => {
                    warn!(server = %id, attempt, error = %e, "warm-swap: replacement not ready");
                    last = e;
                }
            }
        }
        let reason = format!("warm-swap restart failed: {last}");
        let _ = self.transition(&slot, ServerState::Failed, &reason).await;
        Err(reason)
    }

    /// Sends every player on the server to the anteroom (or, before 1.20.5, tells them to
    /// rejoin). Without RCON nobody can be moved; the stop then disconnects them.
    async fn move_players(&self, slot: &Slot) -> SwapReport {
        let mut report = SwapReport::default();
        let Some((addr, password)) = &slot.spec.rcon else {
            warn!(server = %slot.spec.id, "warm-swap without RCON: players are disconnected by the stop");
            return report;
        };
        let mut rcon = match Rcon::connect(addr, password, RCON_LIMIT).await {
            Ok(r) => r,
            Err(e) => {
                warn!(server = %slot.spec.id, error = %e, "warm-swap: RCON unavailable; players are disconnected by the stop");
                return report;
            }
        };
        let eta = eta_text(*slot.eta.lock());
        let on_server: Vec<_> = self
            .sessions
            .list()
            .into_iter()
            .filter(|s| &*s.server == slot.spec.id.as_str())
            .collect();
        for s in on_server {
            let (cmd, transferred) = if s.protocol >= MIN_TRANSFER_PROTOCOL {
                let (host, port) = &s.joined_via;
                (format!("transfer {host} {port} {}", s.player), true)
            } else {
                (
                    format!("kick {} Restarting, rejoin in {eta}", s.player),
                    false,
                )
            };
            match rcon.command(&cmd).await {
                Ok(_) if transferred => report.transferred += 1,
                Ok(_) => report.told_to_rejoin += 1,
                Err(e) => {
                    warn!(server = %slot.spec.id, player = %s.player, error = %e, "warm-swap: RCON command failed")
                }
            }
        }
        if let Err(e) = rcon.command("save-all").await {
            warn!(server = %slot.spec.id, error = %e, "warm-swap: save-all failed");
        }
        report
    }

    /// Waits (bounded) until the moved players have left the old server.
    async fn drain(&self, slot: &Slot) {
        let until = Instant::now() + DRAIN;
        while self.sessions.count(&slot.spec.id) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn start_again(&self, slot: &Arc<Slot>) -> Result<(), String> {
        slot.spec
            .runtime
            .start()
            .await
            .map_err(|e| format!("start failed: {e}"))?;
        let deadline = Instant::now() + slot.spec.start_timeout;
        let spec = &slot.spec;
        if ready::wait_ready(
            &spec.backend,
            spec.proxy_protocol,
            spec.runtime.as_ref(),
            deadline,
        )
        .await
        {
            Ok(())
        } else {
            let _ = slot.spec.runtime.stop(slot.spec.stop_timeout).await;
            Err(format!(
                "not ready within {} s",
                slot.spec.start_timeout.as_secs()
            ))
        }
    }
}
