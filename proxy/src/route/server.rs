//! What the data plane knows about one game server behind Warden.

use std::sync::Arc;

/// A server's stable identifier (from the config, the API or a Docker label).
pub type ServerId = Arc<str>;

/// Messages shown in the server list when Warden answers for a server that can't.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusTexts {
    /// Backend unreachable and nothing cached.
    pub offline: String,
    pub sleeping: String,
    /// `{eta}` is replaced with the expected wait, e.g. "~38 s".
    pub starting: String,
    pub stopping: String,
    pub archived: String,
    pub failed: String,
    /// `data:image/png;base64,…`, shown with every Warden-made status.
    pub favicon: Option<String>,
    /// Version name shown beside Warden-made statuses.
    pub version_name: String,
}

impl Default for StatusTexts {
    fn default() -> Self {
        Self {
            offline: "§cServer is offline".into(),
            sleeping: "§7Sleeping §8- §ajoin to wake it up".into(),
            starting: "§eStarting… usually ready in {eta}".into(),
            stopping: "§6Stopping… join again in a moment".into(),
            archived: "§7Archived §8- §ajoin to restore it".into(),
            failed: "§cServer failed to start".into(),
            favicon: None,
            version_name: "Warden".into(),
        }
    }
}

/// One routable server: where it is and how to talk to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub id: ServerId,
    /// `host:port` of the game server. For wildcard routes this may hold `{1}`… placeholders
    /// that the lookup fills with the labels the wildcard captured.
    pub backend: String,
    /// Replace the handshake address with this when forwarding (e.g. for servers that check it).
    pub rewrite_host: Option<String>,
    /// Send a PROXY protocol v2 header so the server sees the player's real address.
    pub proxy_protocol: bool,
    /// The server itself accepts handshake intent 3; otherwise Warden rewrites 3 to 2.
    pub accepts_transfers: bool,
    pub status: Arc<StatusTexts>,
}

impl Server {
    pub fn new(id: &str, backend: &str) -> Self {
        Self {
            id: Arc::from(id),
            backend: backend.to_string(),
            rewrite_host: None,
            proxy_protocol: false,
            accepts_transfers: false,
            status: Arc::new(StatusTexts::default()),
        }
    }
}
