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

use super::{archive, wake, Engine, Slot};

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
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no managed server `{0}` on this appliance")]
    NotFound(String),
    /// The request is valid but the server's state does not allow it now.
    #[error("{0}")]
    Refused(String),
}

/// A running action: resolves to what happened, or why it failed.
pub type ActionRun = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

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
    /// The appliance it is placed on (after a migration).
    pub placed: Option<String>,
    pub archive_bytes: Option<u64>,
    pub backend: String,
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
        })
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

    /// Checks that `action` can run on `id` now and returns it ready to run. `arg` is the
    /// image for a restart or the target appliance for a migration; `force` lets a sleep
    /// stop a server with players on it.
    pub async fn prepare(
        self: &Arc<Self>,
        id: &str,
        action: Action,
        arg: Option<String>,
        force: bool,
    ) -> Result<ActionRun, ActionError> {
        let slot = self
            .slots
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| ActionError::NotFound(id.to_string()))?;
        let state = *slot.state.borrow();
        let refuse = |what: &str| {
            Err(ActionError::Refused(format!(
                "cannot {} {id} while it is {state}{what}",
                action.as_str()
            )))
        };
        let me = self.clone();
        match action {
            Action::Wake => {
                if state == ServerState::Active {
                    return Ok(Box::pin(async { Ok("already active".to_string()) }));
                }
                let _ = wake::begin(self, &slot, wake::Cause::Api);
                Ok(Box::pin(async move { me.until_awake(&slot).await }))
            }
            Action::Sleep => {
                if state != ServerState::Active {
                    return refuse("");
                }
                let players = self.store.live_count(id).await.unwrap_or(1);
                if players > 0 && !force {
                    return Err(ActionError::Refused(format!(
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
            Action::Archive => {
                if state != ServerState::Sleeping {
                    return refuse(" (only a sleeping server can be archived)");
                }
                if slot.spec.archive.is_none() || slot.spec.data.is_none() {
                    return Err(ActionError::Refused(format!(
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
            Action::Restore => {
                if state != ServerState::Archived {
                    return refuse(" (only an archived server can be restored)");
                }
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
            Action::Restart => {
                if state != ServerState::Active {
                    return refuse(" (only a running server can be restarted)");
                }
                let id = id.to_string();
                Ok(Box::pin(async move {
                    let r = me.restart(&id, arg.as_deref()).await?;
                    Ok(format!(
                        "restarted{} in {:.1} s: {} players moved to the anteroom, {} told to rejoin",
                        r.image.map(|i| format!(" on {i}")).unwrap_or_default(),
                        r.secs,
                        r.transferred,
                        r.told_to_rejoin
                    ))
                }))
            }
            Action::Migrate => {
                let Some(to) = arg else {
                    return Err(ActionError::Refused(
                        "migrate needs the target appliance (`to`)".into(),
                    ));
                };
                self.check_migrate(&slot, &to)
                    .map_err(ActionError::Refused)?;
                let busy = claim(&slot)?;
                Ok(Box::pin(async move { me.migrate(&slot, &to, busy).await }))
            }
        }
    }

    /// Waits for a wake to end: Ok once the server is active, the reason otherwise.
    pub(super) async fn until_awake(&self, slot: &Slot) -> Result<String, String> {
        let mut rx = slot.state.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            if state == ServerState::Active {
                return Ok("active".into());
            }
            if let Some(why) = slot.blocked.lock().clone() {
                return Err(why);
            }
            if slot.waking.try_lock().is_ok() {
                let reason = slot.record.lock().reason.clone();
                return Err(format!("{state}: {reason}"));
            }
            if rx.changed().await.is_err() {
                return Err("the server was removed".into());
            }
        }
    }
}

/// Takes the server's busy lock, or refuses if a wake, sleep or archive runs.
fn claim(slot: &Arc<Slot>) -> Result<tokio::sync::OwnedMutexGuard<()>, ActionError> {
    slot.waking.clone().try_lock_owned().map_err(|_| {
        ActionError::Refused(format!(
            "{} is busy: a wake, sleep, archive or restart is in progress",
            slot.spec.id
        ))
    })
}
