//! Taking 1.20.5+ players into the anteroom while their server wakes or is restored.
//!
//! The hold in `wake` keeps a bare TCP connection for at most ~25 s, the client's own
//! limit. The anteroom has no such limit: the player is logged in and kept in the
//! configuration phase with keep-alives, sees what is happening (a dialog on 1.21.6+), and
//! is transferred back to the same address once the server is ready. The edge recognises
//! the returning player by the ticket and forwards them straight to the backend.
//!
//! A guest wakes the server only once it has answered its first keep-alive: anyone can send
//! a Login Start with any name, but a wake costs money. A guest that never proves itself
//! is counted as `warden_wake_requests_total{result="unproven"}`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};
use tracing::info;
use warden_anteroom::{Anteroom, Destination, Guest, Outcome, WaitStatus, Waiting};
use warden_proxy::admission::{HeldConnection, Hold};
use warden_proxy::wire::{log_safe, normalize_host};
use warden_store::ServerState;

use super::{wake, Engine, Slot};

pub(super) struct AnteroomHold {
    pub(super) engine: Weak<Engine>,
    pub(super) anteroom: Anteroom,
}

#[async_trait]
impl Hold for AnteroomHold {
    async fn hold(&self, conn: HeldConnection) {
        let (Some(engine), Some(dest)) = (self.engine.upgrade(), destination(&conn)) else {
            return;
        };
        let Some(slot) = engine.slot(&conn.server) else {
            return;
        };
        let ip = conn.player.addr.ip();
        // No wake yet: it costs money, so it waits until the guest has answered a
        // keep-alive (a real client, not a script that sent Login Start).
        let proved = AtomicBool::new(false);
        let (tx, rx) = watch::channel(status(&slot, true));
        let (proven_tx, proven_rx) = oneshot::channel();
        // Follows the server's state for this guest, and wakes it once the guest is proven;
        // ends with the hold.
        let follow = async {
            let mut states = slot.state.subscribe();
            let mut proven = Some(proven_rx);
            loop {
                tokio::select! {
                    told = async {
                        match proven.as_mut() {
                            Some(p) => p.await,
                            None => std::future::pending().await,
                        }
                    }, if proven.is_some() => {
                        proven = None;
                        if told.is_ok() {
                            proved.store(true, Ordering::Relaxed);
                            if let Err(why) = wake::begin(&engine, &slot, wake::Cause::Player(ip)) {
                                tx.send_replace(WaitStatus::Failed(why));
                                return std::future::pending::<Outcome>().await;
                            }
                        }
                    }
                    changed = states.changed() => if changed.is_err() { break },
                }
                tx.send_replace(status(&slot, !proved.load(Ordering::Relaxed)));
            }
            // The server was removed (its container is gone): nothing to wait for.
            tx.send_replace(WaitStatus::Failed("it is no longer available".into()));
            std::future::pending::<Outcome>().await
        };
        let player = conn.player.name.clone();
        let outcome = tokio::select! {
            o = self.anteroom.hold_proving(guest(conn), dest, rx, Some(proven_tx)) => o,
            never = follow => never,
        };
        if outcome != Outcome::Transferred && !proved.load(Ordering::Relaxed) {
            wake::count(&engine, wake::Cause::Player(ip), "unproven");
        }
        match outcome {
            Outcome::Transferred => {
                info!(server = %slot.spec.id, player = %log_safe(&player), "anteroom: transferred to the ready server")
            }
            other => {
                info!(server = %slot.spec.id, player = %log_safe(&player), outcome = ?other, "anteroom: hold ended")
            }
        }
    }
}

/// The anteroom's view of a held connection.
fn guest(held: HeldConnection) -> Guest {
    Guest {
        client: held.client,
        received: held.received,
        protocol: held.player.protocol,
        name: held.player.name,
        uuid: held.player.uuid,
        addr: held.player.addr,
    }
}

/// The player is sent back to the address they used: the handshake's host and port.
fn destination(conn: &HeldConnection) -> Option<Destination> {
    let host = normalize_host(&conn.handshake.address).ok()?;
    Some(Destination {
        server_id: conn.server.id.to_string(),
        server_name: conn.server.id.to_string(),
        host,
        port: conn.handshake.port,
    })
}

/// What the waiting player is told, from the server's state. While this guest's wake is
/// `pending` (not begun: the guest has not proven itself yet), an earlier failure is not
/// theirs to hear: their wake will be a new attempt.
fn status(slot: &Slot, pending: bool) -> WaitStatus {
    if let Some(why) = slot.blocked.lock().clone().filter(|_| !pending) {
        return WaitStatus::Failed(why);
    }
    let eta = *slot.eta.lock();
    let state = *slot.state.borrow();
    if slot.queued.load(std::sync::atomic::Ordering::Acquire) && state != ServerState::Active {
        return WaitStatus::Waiting {
            why: Waiting::Capacity,
            eta,
        };
    }
    match state {
        ServerState::Active => WaitStatus::Ready,
        // A failure only counts once no wake is running (a new join restarts it).
        ServerState::Failed if !pending && slot.waking.try_lock().is_ok() => {
            WaitStatus::Failed(slot.record.lock().reason.clone())
        }
        ServerState::Archived | ServerState::Restoring if slot.record.lock().recovery.is_some() => {
            WaitStatus::Waiting {
                why: Waiting::Recovering,
                eta,
            }
        }
        ServerState::Archived | ServerState::Restoring => WaitStatus::Waiting {
            why: Waiting::Restoring,
            eta,
        },
        ServerState::Swapping => WaitStatus::Waiting {
            why: Waiting::Restarting,
            eta,
        },
        _ => WaitStatus::Waiting {
            why: Waiting::Waking,
            eta,
        },
    }
}

pub(super) fn new(engine: Weak<Engine>, anteroom: Anteroom) -> Arc<AnteroomHold> {
    Arc::new(AnteroomHold { engine, anteroom })
}
