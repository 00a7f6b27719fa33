//! Warm-swap restart: restart a running server without disconnecting its players.
//!
//! The server is marked `swapping`, so new joins go to the anteroom. Its players are
//! moved there too, with RCON `transfer` (1.20.5+ clients; older ones are told to rejoin
//! shortly). Then the server is stopped gracefully and started again on the same data;
//! once it answers, the anteroom transfers everyone back. An upgrade names a new image for
//! the replacement. Every step is time-bound; a replacement that does not come up is
//! followed by the previous image (or, without an upgrade, one more start) before the
//! server is marked failed, so the players are released to a running server whenever one
//! can run.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{timeout, Instant};
use tracing::{info, warn};
use warden_proxy::status::render::eta_text;
use warden_runtime::rcon::Rcon;
use warden_store::ServerState;

use super::{ready, Command, Engine, LifecycleError, Slot};

/// Bound for each RCON exchange (servers are quirky: never wait on one forever).
const RCON_LIMIT: Duration = Duration::from_secs(5);
/// How long transferred players get to leave the old server before it is stopped.
const DRAIN: Duration = Duration::from_secs(10);
/// A player still on the server this long after being asked to leave is asked again
/// (it was probably still logging in, unknown to the console).
const ASK_AGAIN: Duration = Duration::from_secs(3);
/// Waiting for a wake or sleep in progress to finish before swapping.
const BUSY_WAIT: Duration = Duration::from_secs(30);
/// Transfer needs 1.20.5+ (protocol 766).
const MIN_TRANSFER_PROTOCOL: i32 = warden_proxy::wire::version::V1_20_5;

/// What a restart did.
#[derive(Debug, Default)]
pub struct SwapReport {
    pub transferred: usize,
    pub told_to_rejoin: usize,
    pub secs: f64,
    /// The image now running, when the restart changed it.
    pub image: Option<String>,
}

impl Engine {
    /// Restarts server `id` (on `image`, if given) with its players kept in the anteroom
    /// meanwhile.
    pub async fn restart(
        &self,
        id: &str,
        image: Option<&str>,
    ) -> Result<SwapReport, LifecycleError> {
        let slot = self
            .slots
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| LifecycleError::Failed(format!("no managed server `{id}`")))?;
        let started = Instant::now();
        let _busy = timeout(BUSY_WAIT, slot.waking.clone().lock_owned())
            .await
            .map_err(|_| {
                LifecycleError::Refused(format!(
                    "{id} is busy (a wake or sleep did not finish in time)"
                ))
            })?;
        let state = *slot.state.borrow();
        let restart = Command::Restart {
            image: image.map(str::to_string),
        };
        if restart.allowed_in(state, true).is_err() {
            return Err(LifecycleError::Refused(format!(
                "{id} is not running ({})",
                state.as_str()
            )));
        }
        if self.anteroom.is_none() {
            return Err(LifecycleError::Refused(
                "the anteroom is disabled ([anteroom] enabled = false)".into(),
            ));
        }
        let previous = match image {
            Some(img) => Some(slot.spec.runtime.set_image(img)?),
            None => None,
        };
        self.transition(&slot, ServerState::Swapping, "warm-swap restart")
            .await?;
        let mut report = self.move_players(&slot).await;
        info!(server = %id, transferred = report.transferred, "warm-swap: stopping the old server");
        if let Err(e) = slot.spec.runtime.stop(slot.spec.stop_timeout).await {
            warn!(server = %id, error = %e, "warm-swap: stop failed; starting again anyway");
        }
        let first = match self.start_again(&slot).await {
            Ok(()) => {
                report.image = image.map(str::to_string);
                return self
                    .swapped(&slot, report, started, "replacement ready")
                    .await;
            }
            Err(e) => e,
        };
        warn!(server = %id, error = %first, "warm-swap: replacement not ready");
        // Back to what ran before: the previous image, or simply one more start.
        if let Some(prev) = &previous {
            if let Err(e) = slot.spec.runtime.set_image(prev) {
                warn!(server = %id, error = %e, "warm-swap: could not go back to the previous image");
            }
        }
        let second = match self.start_again(&slot).await {
            Ok(()) if previous.is_some() => {
                self.swapped(&slot, report, started, "previous image running again")
                    .await?;
                return Err(LifecycleError::Failed(format!(
                    "the new image did not come up ({first}); the previous one runs again and the players are back on it"
                )));
            }
            Ok(()) => {
                return self
                    .swapped(&slot, report, started, "replacement ready")
                    .await
            }
            Err(e) => e,
        };
        let reason = format!("warm-swap restart failed: {first}; then: {second}");
        let _ = self.transition(&slot, ServerState::Failed, &reason).await;
        Err(LifecycleError::Failed(reason))
    }

    async fn swapped(
        &self,
        slot: &Slot,
        mut report: SwapReport,
        started: Instant,
        why: &str,
    ) -> Result<SwapReport, LifecycleError> {
        self.transition(slot, ServerState::Active, &format!("warm-swap: {why}"))
            .await?;
        report.secs = started.elapsed().as_secs_f64();
        info!(server = %slot.spec.id, secs = report.secs, why, "warm-swap complete");
        Ok(report)
    }

    /// Sends every player on the server to the anteroom (or, before 1.20.5, tells them to
    /// rejoin), then waits (bounded) until they have left. A player still logging in is not
    /// yet known to the server's console, so whoever is still there is asked again every
    /// second. Without RCON nobody can be moved; the stop then disconnects them.
    pub(super) async fn move_players(&self, slot: &Slot) -> SwapReport {
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
        // Session id → when it was last asked to leave.
        let mut asked: std::collections::HashMap<u64, Instant> = std::collections::HashMap::new();
        let until = Instant::now() + DRAIN;
        loop {
            let on_server: Vec<_> = self
                .sessions
                .list()
                .into_iter()
                .filter(|s| &*s.server == slot.spec.id.as_str())
                .collect();
            if on_server.is_empty() || Instant::now() >= until {
                break;
            }
            for s in on_server {
                if asked.get(&s.id).is_some_and(|t| t.elapsed() < ASK_AGAIN) {
                    continue;
                }
                let transfer = s.protocol >= MIN_TRANSFER_PROTOCOL;
                let cmd = if transfer {
                    let (host, port) = &s.joined_via;
                    format!("transfer {host} {port} {}", s.player)
                } else {
                    format!("kick {} Restarting, rejoin in {eta}", s.player)
                };
                match rcon.command(&cmd).await {
                    Ok(_) => {
                        if asked.insert(s.id, Instant::now()).is_none() {
                            if transfer {
                                report.transferred += 1;
                            } else {
                                report.told_to_rejoin += 1;
                            }
                        }
                    }
                    Err(e) => {
                        warn!(server = %slot.spec.id, player = %warden_proxy::wire::log_safe(&s.player), error = %e, "warm-swap: RCON command failed")
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Err(e) = rcon.command("save-all").await {
            warn!(server = %slot.spec.id, error = %e, "warm-swap: save-all failed");
        }
        report
    }

    async fn start_again(&self, slot: &Arc<Slot>) -> Result<(), LifecycleError> {
        slot.spec
            .runtime
            .start()
            .await
            .map_err(|e| LifecycleError::from(e).during("start failed"))?;
        slot.local.store(true, std::sync::atomic::Ordering::Relaxed);
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
            Err(LifecycleError::Failed(format!(
                "not ready within {} s",
                slot.spec.start_timeout.as_secs()
            )))
        }
    }
}
