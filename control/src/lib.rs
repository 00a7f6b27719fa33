//! Warden's control plane and the wiring of the `warden` binary.
//!
//! [`config`] reads and checks the TOML file (each server becomes a [`config::ServerSpec`]),
//! [`appliance`] builds the running process (edge, metrics, reload) on pingora, [`reload`]
//! swaps in edited configs, and [`inventory`] merges the file's servers with the API's
//! ([`catalog`]) and Docker's ([`discovery`]) into the engine and the routing table.

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
pub mod inventory;
pub mod lifecycle;
pub mod managed;
pub mod metrics_http;
pub mod reload;
pub mod retention;
pub mod ticket_key;
pub mod upgrade_sock;
pub mod webhooks;
