//! The Lua scripts, each in its own file under `lua/`: every write that must be atomic
//! is one script. The writing ones share `prelude.lua` (append a transition, append to
//! the feed, bump and publish the version), put in front of them at compile time.

use redis::Script;

/// A script from `lua/` with the shared helpers in front.
macro_rules! with_prelude {
    ($file:literal) => {
        concat!(
            include_str!("lua/prelude.lua"),
            include_str!(concat!("lua/", $file))
        )
    };
}

pub(super) struct Scripts {
    pub(super) put_new: Script,
    pub(super) apply: Script,
    pub(super) delete: Script,
    pub(super) session_start: Script,
    pub(super) session_end: Script,
    pub(super) prune_sessions: Script,
    pub(super) live_count: Script,
    pub(super) heartbeat: Script,
    pub(super) wake_acquire: Script,
    pub(super) wake_renew: Script,
    pub(super) wake_release: Script,
    pub(super) doc_put: Script,
    pub(super) doc_delete: Script,
    pub(super) node_cas: Script,
    pub(super) fleet_event: Script,
}

impl Scripts {
    pub(super) fn load() -> Self {
        Scripts {
            put_new: Script::new(with_prelude!("put_new.lua")),
            apply: Script::new(with_prelude!("apply.lua")),
            delete: Script::new(with_prelude!("delete.lua")),
            session_start: Script::new(with_prelude!("session_start.lua")),
            session_end: Script::new(with_prelude!("session_end.lua")),
            prune_sessions: Script::new(include_str!("lua/prune_sessions.lua")),
            live_count: Script::new(include_str!("lua/live_count.lua")),
            heartbeat: Script::new(include_str!("lua/heartbeat.lua")),
            wake_acquire: Script::new(include_str!("lua/wake_acquire.lua")),
            wake_renew: Script::new(include_str!("lua/wake_renew.lua")),
            wake_release: Script::new(include_str!("lua/wake_release.lua")),
            doc_put: Script::new(with_prelude!("doc_put.lua")),
            doc_delete: Script::new(with_prelude!("doc_delete.lua")),
            node_cas: Script::new(with_prelude!("node_cas.lua")),
            fleet_event: Script::new(with_prelude!("fleet_event.lua")),
        }
    }
}
