//! One event shape for everything that reports what happened: the API's event list and
//! live stream, and the webhooks. Events are derived from the store's records (state
//! transitions and player sessions), so a dashboard, a webhook and the audit trail can
//! never tell different stories.

use serde::Serialize;
use warden_store::{HistoryEvent, ServerState, SessionRecord, Transition};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// The capacity controller decided something (`reason`: what, why and the numbers,
    /// e.g. `scale_out: forecast 41.2 GB at q0.9 in 6 min > free 36 GB`); `node` names the
    /// node bought, drained or given back, if any.
    Scaling,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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

impl Event {
    /// A state change of `server`.
    pub fn transition(
        server: &str,
        from: Option<ServerState>,
        to: ServerState,
        reason: &str,
        at_unix_ms: u64,
    ) -> Self {
        Event {
            kind: EventKind::Transition,
            server: server.to_string(),
            at_unix_ms,
            from: from.map(|s| s.as_str().to_string()),
            to: Some(to.as_str().to_string()),
            reason: Some(reason.to_string()),
            player: None,
            session: None,
            backup: None,
            node: None,
            backup_age_ms: None,
        }
    }

    /// Node `node` was declared dead.
    pub fn node_down(node: &str, reason: &str, at_unix_ms: u64) -> Self {
        Event {
            node: Some(node.to_string()),
            ..Self::backup(EventKind::NodeDown, "", None, reason, at_unix_ms)
        }
    }

    /// `server` is back on `node` from `backup`, `backup_age_ms` older than the loss.
    pub fn recovered(
        server: &str,
        node: &str,
        backup: Option<&str>,
        backup_age_ms: Option<u64>,
        reason: &str,
        at_unix_ms: u64,
    ) -> Self {
        Event {
            node: Some(node.to_string()),
            backup_age_ms,
            ..Self::backup(
                EventKind::ServerRecovered,
                server,
                backup,
                reason,
                at_unix_ms,
            )
        }
    }

    /// A capacity decision (`reason`), about `node` if it concerns one.
    pub fn scaling(node: Option<&str>, reason: &str, at_unix_ms: u64) -> Self {
        Event {
            node: node.map(str::to_string),
            ..Self::backup(EventKind::Scaling, "", None, reason, at_unix_ms)
        }
    }

    /// A backup of `server` taken, failed or restored (`kind`).
    pub fn backup(
        kind: EventKind,
        server: &str,
        backup: Option<&str>,
        reason: &str,
        at_unix_ms: u64,
    ) -> Self {
        Event {
            kind,
            server: server.to_string(),
            at_unix_ms,
            from: None,
            to: None,
            reason: Some(reason.to_string()),
            player: None,
            session: None,
            backup: backup.map(str::to_string),
            node: None,
            backup_age_ms: None,
        }
    }

    /// A player joining or leaving (`kind`) in session `session`.
    pub fn player(
        kind: EventKind,
        server: &str,
        player: &str,
        session: &str,
        at_unix_ms: u64,
    ) -> Self {
        Event {
            kind,
            server: server.to_string(),
            at_unix_ms,
            from: None,
            to: None,
            reason: None,
            player: Some(player.to_string()),
            session: Some(session.to_string()),
            backup: None,
            node: None,
            backup_age_ms: None,
        }
    }

    pub fn from_transition(t: &Transition) -> Self {
        Self::transition(&t.server, t.from, t.to, &t.reason, t.at_unix_ms)
    }

    /// An entry of the store's history (feed or session time index).
    pub fn from_history(h: &HistoryEvent) -> Self {
        match h {
            HistoryEvent::Transition(t) => Self::from_transition(t),
            HistoryEvent::Joined(s) => Self::player(
                EventKind::PlayerJoined,
                &s.server,
                &s.player,
                &s.id,
                h.at_unix_ms(),
            ),
            HistoryEvent::Left(s) => Self::player(
                EventKind::PlayerLeft,
                &s.server,
                &s.player,
                &s.id,
                h.at_unix_ms(),
            ),
            // The only fleet-wide events recorded are capacity decisions.
            HistoryEvent::Fleet(e) => Self::scaling(e.node.as_deref(), &e.reason, e.at_unix_ms),
        }
    }

    /// The join, and the leave if the session has ended.
    pub fn from_session(s: &SessionRecord) -> Vec<Self> {
        let at = |kind, at| Self::player(kind, &s.server, &s.player, &s.id, at);
        let mut out = vec![at(EventKind::PlayerJoined, s.start_unix_ms)];
        if let Some(end) = s.end_unix_ms {
            out.push(at(EventKind::PlayerLeft, end));
        }
        out
    }

    /// The name webhooks filter on: `server_started`, `server_stopped`, `server_failed`,
    /// `server_crashed`, `player_joined`, `player_left`, `backup_taken`, `backup_failed`,
    /// `backup_restored`, `node_down`, `server_recovered`, `scaling`, or `server_<state>` for the rest.
    pub fn name(&self) -> String {
        match self.kind {
            EventKind::PlayerJoined => "player_joined".into(),
            EventKind::PlayerLeft => "player_left".into(),
            EventKind::BackupTaken => "backup_taken".into(),
            EventKind::BackupFailed => "backup_failed".into(),
            EventKind::BackupRestored => "backup_restored".into(),
            EventKind::NodeDown => "node_down".into(),
            EventKind::ServerRecovered => "server_recovered".into(),
            EventKind::Scaling => "scaling".into(),
            EventKind::Transition => {
                let to = self.to.as_deref().unwrap_or_default();
                let from = self.from.as_deref().unwrap_or_default();
                match (from, to) {
                    (_, "active") => "server_started".into(),
                    ("active", "sleeping") => "server_crashed".into(),
                    ("stopping", "sleeping") => "server_stopped".into(),
                    (_, "failed") => "server_failed".into(),
                    (_, other) => format!("server_{other}"),
                }
            }
        }
    }

    /// A one-line human description, for chat webhooks and the CLI.
    pub fn describe(&self) -> String {
        let who = self.player.as_deref().unwrap_or("a player");
        match self.kind {
            EventKind::PlayerJoined => format!("{who} joined {}", self.server),
            EventKind::PlayerLeft => format!("{who} left {}", self.server),
            EventKind::Scaling => format!("capacity: {}", self.reason.as_deref().unwrap_or("")),
            EventKind::NodeDown => format!(
                "node {} is down: {}",
                self.node.as_deref().unwrap_or("?"),
                self.reason.as_deref().unwrap_or("")
            ),
            EventKind::BackupTaken
            | EventKind::BackupFailed
            | EventKind::BackupRestored
            | EventKind::ServerRecovered => {
                format!(
                    "{}: {} {}",
                    self.server,
                    self.name().replace('_', " "),
                    self.reason.as_deref().unwrap_or("")
                )
            }
            EventKind::Transition => format!(
                "{}: {} → {} ({})",
                self.server,
                self.from.as_deref().unwrap_or("new"),
                self.to.as_deref().unwrap_or("?"),
                self.reason.as_deref().unwrap_or("")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(from: Option<ServerState>, to: ServerState) -> Event {
        Event::from_transition(&Transition {
            server: "s".into(),
            from,
            to,
            reason: "r".into(),
            at_unix_ms: 1,
            duration_ms: None,
            epoch: 1,
        })
    }

    #[test]
    fn webhook_names_follow_the_transition() {
        use ServerState::*;
        assert_eq!(t(Some(Starting), Active).name(), "server_started");
        assert_eq!(t(Some(Stopping), Sleeping).name(), "server_stopped");
        assert_eq!(t(Some(Active), Sleeping).name(), "server_crashed");
        assert_eq!(t(Some(Starting), Failed).name(), "server_failed");
        assert_eq!(t(None, Sleeping).name(), "server_sleeping");
        let b = Event::backup(
            EventKind::BackupFailed,
            "s",
            None,
            "(at stop): disk full",
            1,
        );
        assert_eq!(b.name(), "backup_failed");
        assert_eq!(b.describe(), "s: backup failed (at stop): disk full");
    }
}
