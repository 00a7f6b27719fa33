//! What operators ask of the engine (through the control API): wake, sleep, archive or
//! restore a server now, restart it, and a read-only view of each server. Every action
//! checks the server's state before it starts, so a request that cannot work is refused
//! at once (the API's 409) instead of failing halfway.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_store::ServerState;

use super::{archive, backup, wake, Command, Engine, LifecycleError, Slot};

/// An operator action on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Start it (restoring first if archived); done when it answers.
    Wake,
    /// Stop it now. Refused while players are on it unless forced.
    Sleep,
    /// Archive a sleeping server's world to archive storage (verified before the node copy goes).
    Archive,
    /// Bring an archived world back to the node; the server stays asleep.
    Restore,
    /// Warm-swap restart: players wait in the anteroom and come back (optionally on a new image).
    Restart,
    /// Move the server to another appliance.
    Migrate,
    /// Back up its world now (verified; online through RCON while it runs).
    Backup,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Wake => "wake",
            Action::Sleep => "sleep",
            Action::Archive => "archive",
            Action::Restore => "restore",
            Action::Restart => "restart",
            Action::Migrate => "migrate",
            Action::Backup => "backup",
        }
    }
}

/// A running action: resolves to what happened, or why it failed.
pub type ActionRun = Pin<Box<dyn Future<Output = Result<String, LifecycleError>> + Send>>;

/// One managed server as the engine sees it.
#[derive(Debug, Clone)]
pub struct ServerView {
    pub id: String,
    pub state: ServerState,
    pub reason: String,
    pub since_unix_ms: u64,
    pub eta: Option<Duration>,
    pub memory_gb: f64,
    /// This appliance runs it.
    pub local: bool,
    /// The node that owns it (placed at creation, moved by a migration).
    pub placed: Option<String>,
    pub archive_bytes: Option<u64>,
    pub backend: String,
    /// When its newest backup this appliance knows of was taken.
    pub last_backup_unix_ms: Option<u64>,
}

impl Engine {
    pub fn view(&self, id: &str) -> Option<ServerView> {
        let slot = self.slots.read().get(id).cloned()?;
        let rec = slot.record.lock().clone();
        let eta = *slot.eta.lock();
        Some(ServerView {
            id: rec.id,
            state: rec.state,
            reason: rec.reason,
            since_unix_ms: rec.since_unix_ms,
            eta,
            memory_gb: slot.spec.memory_gb,
            local: slot.local.load(std::sync::atomic::Ordering::Relaxed),
            placed: rec.node.clone(),
            archive_bytes: rec.archive.map(|a| a.bytes),
            backend: slot.spec.backend.clone(),
            last_backup_unix_ms: self.backups.last(id),
        })
    }

    /// Asks `owner` over the link's control stream to put the server to sleep, when this
    /// appliance has a link to it.
    fn sleep_over_link(&self, slot: &Slot, owner: &str, force: bool) -> Option<ActionRun> {
        let dialer = self.link.get()?.clone();
        self.link_to(slot)?;
        let (id, owner) = (slot.spec.id.clone(), owner.to_string());
        Some(Box::pin(async move {
            let ask = warden_link::control::Ask::Sleep {
                server: id.clone(),
                force,
            };
            match dialer.ask(&owner, &ask).await {
                Ok(Ok(())) => Ok(format!("{owner} is putting {id} to sleep")),
                Ok(Err(why)) => Err(LifecycleError::Refused(why)),
                Err(e) => Err(LifecycleError::Refused(format!(
                    "{id} is owned by {owner}, which could not be asked over the link ({e}); ask that appliance to sleep it"
                ))),
            }
        }))
    }

    pub fn store(&self) -> &Arc<dyn warden_store::StateStore> {
        &self.store
    }

    /// This appliance's name in the store.
    pub fn appliance(&self) -> &str {
        &self.settings.appliance
    }

    /// Events of this appliance (its transitions and its players' joins and leaves).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::events::Event> {
        self.events.subscribe()
    }

    /// Tells every subscriber (the API's live feed, the webhooks) about `event`: for what
    /// happens beside the engine, like the capacity controller's decisions.
    pub fn announce(&self, event: crate::events::Event) {
        let _ = self.events.send(event);
    }

    /// Checks that `command` can run on `id` now (the state table of
    /// [`Command::allowed_in`]) and returns it ready to run.
    pub async fn prepare(
        self: &Arc<Self>,
        id: &str,
        command: Command,
    ) -> Result<ActionRun, LifecycleError> {
        let slot = self
            .slots
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| LifecycleError::NotFound(id.to_string()))?;
        let state = *slot.state.borrow();
        if command != Command::Wake && self.placed_elsewhere(&slot) {
            // Only the owner acts on it; a wake is forwarded to it (see `wake`), and a
            // sleep too when the owner is linked.
            let owner = slot.record.lock().node.clone().unwrap_or_default();
            if let Command::Sleep { force } = command {
                if let Some(run) = self.sleep_over_link(&slot, &owner, force) {
                    return Ok(run);
                }
            }
            return Err(LifecycleError::Refused(format!(
                "{id} is owned by {owner}; ask that appliance to {} it",
                command.action().as_str()
            )));
        }
        if let Command::Migrate { to } = &command {
            // Its own checks come first (target, addresses, storage), then the table's.
            self.check_migrate(&slot, to)
                .map_err(LifecycleError::Refused)?;
        }
        let local = slot.local.load(std::sync::atomic::Ordering::Relaxed);
        command
            .allowed_in(state, local)
            .map_err(|why| LifecycleError::Refused(why.message(command.action(), id, state)))?;
        let me = self.clone();
        match command {
            Command::Wake => {
                if state == ServerState::Active {
                    return Ok(Box::pin(async { Ok("already active".to_string()) }));
                }
                let _ = wake::begin(self, &slot, wake::Cause::Api);
                Ok(Box::pin(async move { me.until_awake(&slot).await }))
            }
            Command::Sleep { force } => {
                let players = self.store.live_count(id).await?;
                if players > 0 && !force {
                    return Err(LifecycleError::Refused(format!(
                        "{id} has {players} players online; pass force to stop it anyway"
                    )));
                }
                let busy = claim(&slot)?;
                Ok(Box::pin(async move {
                    let r = me
                        .sleep(&slot, "stopped by an operator", "stopped by an operator")
                        .await;
                    drop(busy);
                    r.map(|()| "asleep".to_string())
                }))
            }
            Command::Archive => {
                if slot.spec.archive.is_none() || slot.spec.data.is_none() {
                    return Err(LifecycleError::Refused(format!(
                        "{id} cannot be archived: no archive storage, or Warden does not own its data (a discovered container)"
                    )));
                }
                let busy = claim(&slot)?;
                Ok(Box::pin(async move {
                    let r = archive::archive(&me, &slot, "archived by an operator").await;
                    drop(busy);
                    r.map(|()| "archived and verified".to_string())
                }))
            }
            Command::Restore => {
                let busy = claim(&slot)?;
                Ok(Box::pin(async move {
                    let r = archive::restore(
                        &me,
                        &slot,
                        "restored by an operator",
                        ServerState::Sleeping,
                    )
                    .await;
                    if r.is_err() {
                        // The world is still only in the archive.
                        let _ = me
                            .transition(&slot, ServerState::Archived, "restore failed")
                            .await;
                    }
                    drop(busy);
                    r.map(|()| "restored; asleep until the next join".to_string())
                }))
            }
            Command::Restart { image } => {
                let id = id.to_string();
                Ok(Box::pin(async move {
                    let r = me.restart(&id, image.as_deref()).await?;
                    Ok(format!(
                        "restarted{} in {:.1} s: {} players moved to the anteroom, {} told to rejoin",
                        r.image.map(|i| format!(" on {i}")).unwrap_or_default(),
                        r.secs,
                        r.transferred,
                        r.told_to_rejoin
                    ))
                }))
            }
            Command::Migrate { to } => {
                let busy = claim(&slot)?;
                Ok(Box::pin(async move { me.migrate(&slot, &to, busy).await }))
            }
            Command::Backup => {
                if let Some(why) = backup::refuse(self, &slot, state) {
                    return Err(LifecycleError::Refused(why));
                }
                let busy = claim(&slot)?;
                Ok(Box::pin(async move {
                    backup::by_operator(&me, &slot, busy).await
                }))
            }
            Command::RestoreBackup { backup: from } => {
                let busy = claim(&slot)?;
                Ok(Box::pin(async move {
                    backup::restore(&me, &slot, &from, busy).await
                }))
            }
        }
    }

    /// Waits for a wake to end: Ok once the server is active, the reason otherwise.
    pub(super) async fn until_awake(&self, slot: &Slot) -> Result<String, LifecycleError> {
        let mut rx = slot.state.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            if state == ServerState::Active {
                return Ok("active".into());
            }
            if let Some(why) = slot.blocked.lock().clone() {
                return Err(LifecycleError::Failed(why));
            }
            if slot.waking.try_lock().is_ok() {
                let reason = slot.record.lock().reason.clone();
                return Err(LifecycleError::Failed(format!("{state}: {reason}")));
            }
            if rx.changed().await.is_err() {
                return Err(LifecycleError::Failed("the server was removed".into()));
            }
        }
    }
}

/// Takes the server's busy lock, or refuses if a wake, sleep or archive runs.
fn claim(slot: &Arc<Slot>) -> Result<tokio::sync::OwnedMutexGuard<()>, LifecycleError> {
    slot.waking.clone().try_lock_owned().map_err(|_| {
        LifecycleError::Refused(format!(
            "{} is busy: a wake, sleep, archive, restart or backup is in progress",
            slot.spec.id
        ))
    })
}
