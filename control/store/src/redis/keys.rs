//! Every Redis key the store uses, named in one place so the scripts' KEYS and the
//! plain commands always agree, and a prefix keeps fleets (or tests) apart.

/// Key names. Ids cannot contain ':' (see `check_id`), so no two ids map to
/// the same key.
#[derive(Clone)]
pub(super) struct Keys {
    p: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Keys {
            p: prefix.to_string(),
        }
    }

    pub(super) fn servers(&self) -> String {
        format!("{}:servers", self.p)
    }
    /// Kept apart from the server JSON so ending a session never disturbs the
    /// compare-and-set on the record.
    pub(super) fn last_end(&self) -> String {
        format!("{}:last-session-end", self.p)
    }
    pub(super) fn tr_all(&self) -> String {
        format!("{}:transitions", self.p)
    }
    pub(super) fn tr_one(&self, server: &str) -> String {
        format!("{}:transitions:{server}", self.p)
    }
    pub(super) fn tr_seq(&self) -> String {
        format!("{}:transition-seq", self.p)
    }
    pub(super) fn sessions(&self) -> String {
        format!("{}:sessions", self.p)
    }
    pub(super) fn open(&self) -> String {
        format!("{}:open-sessions", self.p)
    }
    /// Session ids scored by start time and by end time, fleet-wide and per server.
    pub(super) fn starts(&self) -> String {
        format!("{}:session-starts", self.p)
    }
    pub(super) fn ends(&self) -> String {
        format!("{}:session-ends", self.p)
    }
    pub(super) fn server_starts(&self, server: &str) -> String {
        format!("{}:session-starts:{server}", self.p)
    }
    pub(super) fn server_ends(&self, server: &str) -> String {
        format!("{}:session-ends:{server}", self.p)
    }
    /// Hour start → player ms of pruned sessions.
    pub(super) fn player_ms(&self, server: &str) -> String {
        format!("{}:player-ms:{server}", self.p)
    }
    /// Set once the sessions written before the time index are indexed.
    pub(super) fn session_index(&self) -> String {
        format!("{}:session-index", self.p)
    }
    pub(super) fn feed(&self) -> String {
        format!("{}:feed", self.p)
    }
    pub(super) fn feed_seq(&self) -> String {
        format!("{}:feed-seq", self.p)
    }
    pub(super) fn live_prefix(&self) -> String {
        format!("{}:live:", self.p)
    }
    pub(super) fn live(&self, appliance: &str) -> String {
        format!("{}:live:{appliance}", self.p)
    }
    pub(super) fn appliances(&self) -> String {
        format!("{}:appliances", self.p)
    }
    pub(super) fn wake(&self, server: &str) -> String {
        format!("{}:wake:{server}", self.p)
    }
    pub(super) fn wake_epoch(&self, server: &str) -> String {
        format!("{}:wake-epoch:{server}", self.p)
    }
    pub(super) fn docs(&self, kind: &str) -> String {
        format!("{}:docs:{kind}", self.p)
    }
    pub(super) fn log(&self, kind: &str) -> String {
        format!("{}:log:{kind}", self.p)
    }
    /// Node id → node record JSON.
    pub(super) fn nodes(&self) -> String {
        format!("{}:nodes", self.p)
    }
    pub(super) fn version(&self) -> String {
        format!("{}:version", self.p)
    }
    pub(super) fn channel(&self) -> String {
        format!("{}:changes", self.p)
    }
}
