//! Warden's test kit: the helpers every test crate shares, in one place, so that no test
//! file starts its own copy of a free-port finder, a process guard or a redis-server.
//!
//! Modules: [`paths`] (repo, peers, temp dirs), [`ports`] (free ports, connecting from a
//! chosen loopback address), [`wait`] (polling), [`process`] (kill-on-drop guards),
//! [`redis`] and [`s3`] (real servers on free ports), [`sentinel`] (a primary, a replica
//! and three sentinels, for failover tests), [`rcon`] (a fake RCON server),
//! [`peers`] (the npm `minecraft-protocol` and PyPI `mcstatus` peers), [`warden`] and
//! [`config`] (the `warden` binary under test and its config text), [`http`] (a minimal
//! HTTP client), [`raw`] (raw TCP and Minecraft frames), [`data`] (test bytes), [`docker`]
//! (a daemon and the test image, cleaned up after), [`delay`] (TCP and UDP relays with a
//! one-way delay and datagram loss: a long link on one machine).
//!
//! It depends on no Warden crate but `warden-wire`, so store, runtime or anteroom tests use
//! it without building the binary. Everything is re-exported at the top level.

pub mod config;
pub mod data;
pub mod delay;
pub mod docker;
pub mod http;
pub mod paths;
pub mod peers;
pub mod ports;
pub mod process;
pub mod raw;
pub mod rcon;
pub mod redis;
pub mod s3;
pub mod sentinel;
pub mod wait;
pub mod warden;

pub use config::*;
pub use data::*;
pub use docker::*;
pub use http::*;
pub use paths::*;
pub use peers::*;
pub use ports::*;
pub use process::*;
pub use raw::*;
pub use rcon::*;
pub use redis::*;
pub use s3::S3Server;
pub use sentinel::{redis_query, RedisReply, SentinelSet, MASTER_NAME};
pub use wait::*;
pub use warden::*;
