//! Warden's control plane and the wiring of the `warden` binary.
//!
//! [`config`] reads and checks the TOML file, [`appliance`] builds the running process
//! (edge, metrics, reload) on pingora, and [`reload`] swaps in edited configs.

pub mod admin;
pub mod api;
pub mod appliance;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod control_metrics;
pub mod demo;
pub mod discovery;
pub mod events;
pub mod fdlimit;
pub mod http_guard;
pub mod lifecycle;
pub mod managed;
pub mod metrics_http;
pub mod reload;
pub mod retention;
pub mod ticket_key;
pub mod upgrade_sock;
pub mod webhooks;
