//! Taking 1.20.5+ players into the anteroom while their server wakes or is restored.
//!
//! The hold in `wake` keeps a bare TCP connection for at most ~25 s, the client's own
//! limit. The anteroom has no such limit: the player is logged in and kept in the
//! configuration phase with keep-alives, sees what is happening (a dialog on 1.21.6+), and
//! is transferred back to the same address once the server is ready. The edge recognises
//! the returning player by the ticket and forwards them straight to the backend.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use tokio::sync::watch;
use tracing::info;
use warden_anteroom::{Anteroom, Destination, Guest, Outcome, WaitStatus, Waiting};
use warden_proxy::lifecycle::{HeldConnection, Hold};
use warden_proxy::wire::{log_safe, normalize_host, FrameDecoder, Handshake};
use warden_store::ServerState;

use super::{Engine, Slot};

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
        let (tx, rx) = watch::channel(status(&slot));
        // Follows the server's state for this guest; ends with the hold.
        let follow = async {
            let mut states = slot.state.subscribe();
            while states.changed().await.is_ok() {
                tx.send_replace(status(&slot));
            }
            // The server was removed (its container is gone): nothing to wait for.
            tx.send_replace(WaitStatus::Failed("it is no longer available".into()));
            std::future::pending::<Outcome>().await
        };
        let player = conn.player.name.clone();
        let outcome = tokio::select! {
            o = self.anteroom.hold(Guest::from(conn), dest, rx) => o,
            never = follow => never,
        };
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

/// The player is sent back to the address they used: the handshake's host and port.
fn destination(conn: &HeldConnection) -> Option<Destination> {
    let mut dec = FrameDecoder::new();
    dec.buffer_mut().extend_from_slice(&conn.received);
    let frame = dec.next_frame(conn.received.len()).ok()??;
    let hs = Handshake::parse(&frame).ok()?;
    let host = normalize_host(&hs.address).ok()?;
    Some(Destination {
        server_id: conn.server.id.to_string(),
        server_name: conn.server.id.to_string(),
        host,
        port: hs.port,
    })
}

/// What the waiting player is told, from the server's state.
fn status(slot: &Slot) -> WaitStatus {
    if let Some(why) = slot.blocked.lock().clone() {
        return WaitStatus::Failed(why);
    }
    let eta = *slot.eta.lock();
    let state = *slot.state.borrow();
    match state {
        ServerState::Active => WaitStatus::Ready,
        // A failure only counts once no wake is running (a new join restarts it).
        ServerState::Failed if slot.waking.try_lock().is_ok() => {
            WaitStatus::Failed(slot.record.lock().reason.clone())
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
