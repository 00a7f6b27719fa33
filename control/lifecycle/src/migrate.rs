//! Moving a server to another appliance (`warden migrate ID --to NODE`).
//!
//! A world lives on one node; a fleet's edges reach it wherever it is placed. Migration
//! chains what the lifecycle already does safely: the players go to the anteroom (as in a
//! warm swap), the server stops, its world is archived and verified in the shared archive
//! storage, and the record is placed on the target in the same step that says "archived".
//! The target is then asked to wake it (it restores and starts it), and the players are
//! transferred back through their edge, which now forwards to the target's address.

use std::sync::Arc;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use tracing::{info, warn};
use warden_store::{Change, ServerState};

use super::{archive, wake, Command, Engine, LifecycleError, Slot};

impl Engine {
    /// Refuses a migration that cannot work, before anything changes.
    pub(super) fn check_migrate(&self, slot: &Slot, to: &str) -> Result<(), String> {
        let id = &slot.spec.id;
        if to == self.settings.appliance {
            return Err(format!("{id} is on {to} already"));
        }
        let known = self.node.fleet.read().iter().any(|n| n.id == to);
        if !known && !slot.spec.node_backends.contains_key(to) {
            return Err(format!(
                "{id} has no address on {to}: add it to the server's node_backends"
            ));
        }
        if slot.spec.archive.is_none() || slot.spec.data.is_none() {
            return Err(format!(
                "{id} cannot move: a migration goes through archive storage both appliances share"
            ));
        }
        let state = *slot.state.borrow();
        let local = slot.local.load(std::sync::atomic::Ordering::Relaxed);
        let command = Command::Migrate { to: to.to_string() };
        command
            .allowed_in(state, local)
            .map_err(|why| why.message(command.action(), id, state))
    }

    /// Moves the server to `to`; `busy` is its claimed busy lock.
    pub(super) async fn migrate(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        to: &str,
        busy: OwnedMutexGuard<()>,
    ) -> Result<String, LifecycleError> {
        let started = Instant::now();
        let id = slot.spec.id.clone();
        let was_running = *slot.state.borrow() == ServerState::Active;
        let mut moved = 0;
        if was_running {
            self.transition(slot, ServerState::Swapping, &format!("migrating to {to}"))
                .await?;
            moved = self.move_players(slot).await.transferred;
            if let Err(e) = slot.spec.runtime.stop(slot.spec.stop_timeout).await {
                let e =
                    LifecycleError::from(e).during("migration stopped: the server did not stop");
                let _ = self
                    .transition(slot, ServerState::Failed, &e.to_string())
                    .await;
                return Err(e);
            }
            slot.local
                .store(false, std::sync::atomic::Ordering::Relaxed);
            self.transition(slot, ServerState::Sleeping, "stopped for migration")
                .await?;
        }
        if *slot.state.borrow() == ServerState::Sleeping {
            archive::archive(self, slot, &format!("migrating to {to}")).await?;
        }
        // Placement and "archived" in one atomic step: there is never a moment when two
        // appliances may start it, or none knows where the world is.
        self.change(
            slot,
            Change::to(ServerState::Archived, format!("placed on {to}")).with_place(to),
        )
        .await?;
        info!(server = %id, %to, secs = started.elapsed().as_secs_f64(), "migrated; the world is in the archive");
        drop(busy);
        if !was_running {
            return Ok(format!(
                "placed on {to} (archived; it starts there on the next join)"
            ));
        }
        // It was running: have the target bring it up now, for the players waiting.
        let _ = wake::begin(self, slot, wake::Cause::Migrate);
        match self.until_awake(slot).await {
            Ok(_) => Ok(format!(
                "moved to {to} in {:.1} s: {moved} players went through the anteroom",
                started.elapsed().as_secs_f64()
            )),
            Err(e) => {
                warn!(server = %id, %to, error = %e, "migrated, but the target did not start it");
                Err(e.during(format!("placed on {to}, but it did not start there")))
            }
        }
    }
}
