//! The API's own shapes of engine types: the JSON and OpenAPI schema the API promises
//! stay here, so the engine's types carry no web derives and can change without
//! changing the API by accident. Each converts from (and, for inputs, into) the engine's.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warden_lifecycle::events;

/// An operator action on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Start it (restoring first if archived); done when it answers.
    Wake,
    /// Stop it now. Refused while players are on it unless forced.
    Sleep,
    /// Archive a sleeping server's world to archive storage (verified before the node copy goes).
    Archive,
    /// Bring an archived world back to the node; the server stays asleep. With `backup`:
    /// replace a sleeping server's world with that backup (or the next older one that
    /// verifies).
    Restore,
    /// Warm-swap restart: players wait in the anteroom and come back (optionally on a new image).
    Restart,
    /// Move the server to another appliance.
    Migrate,
    /// Back up its world now (verified; online through RCON while it runs).
    Backup,
}

impl From<Action> for warden_lifecycle::Action {
    fn from(a: Action) -> Self {
        use warden_lifecycle::Action as E;
        match a {
            Action::Wake => E::Wake,
            Action::Sleep => E::Sleep,
            Action::Archive => E::Archive,
            Action::Restore => E::Restore,
            Action::Restart => E::Restart,
            Action::Migrate => E::Migrate,
            Action::Backup => E::Backup,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A server changed state (`from` → `to`).
    Transition,
    /// A player joined a server.
    PlayerJoined,
    /// A player left a server.
    PlayerLeft,
    /// A backup was taken and verified (`backup`: its id).
    BackupTaken,
    /// A backup could not be taken (`reason`: why).
    BackupFailed,
    /// A backup was restored (`reason` names any newer one skipped as corrupt).
    BackupRestored,
    /// A node's lease lapsed past `dead_after`: it was declared dead (`node`), and its
    /// servers are re-placed.
    NodeDown,
    /// A dead node's server is back on `node`, restored from `backup`, which was taken
    /// `backup_age_ms` before the old node was last known alive: the data at risk.
    ServerRecovered,
    /// The capacity controller decided something (`reason`: what, why, the numbers);
    /// `node`: the node bought, drained or given back.
    Scaling,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Event {
    pub kind: EventKind,
    pub server: String,
    pub at_unix_ms: u64,
    /// Transitions: the state left (absent when the server was created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Transitions: the state entered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Transitions: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Player events: the player's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub player: Option<String>,
    /// Player events: the session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Backup events: the backup's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Node events: the node; recoveries: the server's new node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Recoveries: how much older the restored backup is than the old node's last sign of
    /// life (the play time that may be lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_age_ms: Option<u64>,
}

impl From<events::Event> for Event {
    fn from(e: events::Event) -> Self {
        Event {
            kind: match e.kind {
                events::EventKind::Transition => EventKind::Transition,
                events::EventKind::PlayerJoined => EventKind::PlayerJoined,
                events::EventKind::PlayerLeft => EventKind::PlayerLeft,
                events::EventKind::BackupTaken => EventKind::BackupTaken,
                events::EventKind::BackupFailed => EventKind::BackupFailed,
                events::EventKind::BackupRestored => EventKind::BackupRestored,
                events::EventKind::NodeDown => EventKind::NodeDown,
                events::EventKind::ServerRecovered => EventKind::ServerRecovered,
                events::EventKind::Scaling => EventKind::Scaling,
            },
            server: e.server,
            at_unix_ms: e.at_unix_ms,
            from: e.from,
            to: e.to,
            reason: e.reason,
            player: e.player,
            session: e.session,
            backup: e.backup,
            node: e.node,
            backup_age_ms: e.backup_age_ms,
        }
    }
}
