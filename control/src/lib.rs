//! The `warden` binary's library: everything that reads files or wires crates together.
//!
//! [`config`] reads and checks the TOML file (each server becomes a [`config::ServerSpec`]);
//! [`appliance`] builds the running process on pingora (the edge from `warden-proxy`, the
//! engine from `warden-lifecycle`, the API from `warden-api`); [`reload`] swaps in edited
//! configs; [`inventory`] merges the file's servers (as last accepted), the API's
//! ([`catalog`], which stores them) and Docker's ([`discovery`], labelled containers) into
//! the engine and the routing table; [`managed`] turns a server's spec into the engine's
//! managed server; [`capacity`] starts the fleet's capacity controller; [`link`] starts the edge↔node QUIC link; [`webhooks`] posts events;
//! [`control_metrics`] and [`metrics_http`] serve Prometheus metrics; [`retention`]
//! prunes old sessions; [`fdlimit`], [`ticket_key`] and [`upgrade_sock`] prepare the
//! process (file descriptors, the transfer-ticket key, zero-downtime upgrades); [`cli`]
//! is the operator's command line, [`store_backup`] its `warden store backup`, and [`demo`]
//! the quickstart's tiny server.

pub mod appliance;
pub mod capacity;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod control_metrics;
pub mod demo;
pub mod discovery;
pub mod fdlimit;
pub mod inventory;
pub mod link;
pub mod managed;
pub mod metrics_http;
pub mod reload;
pub mod retention;
pub mod store_backup;
pub mod ticket_key;
pub mod upgrade_sock;
pub mod webhooks;
