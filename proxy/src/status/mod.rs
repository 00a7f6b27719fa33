//! Server-list status answered at the edge.
//!
//! A server list refresh or a ping flood must not reach the game server once per ping
//! (mc-router pipes every ping; Velocity pings every try-server). Warden asks the backend
//! at most once per TTL per host and backend (after a failure, once per error TTL) and
//! answers everyone else from the [`cache`]. When the backend is down, sleeping or
//! starting, Warden answers for it with a per-state MOTD ([`render`]).

pub mod cache;
pub mod fetch;
pub mod render;

pub use cache::{CacheKey, Lookup, Policy, StatusCache};
pub use fetch::{fetch_status, BackendStatus, FetchError};
