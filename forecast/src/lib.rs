//! Demand forecasting and capacity planning (issue 6): demand series from
//! usage records and trace files, a linfa model with a fallback chain and
//! quantiles, the evaluation protocol, a capacity planner for hourly-billed
//! cloud nodes, a Hetzner Cloud provisioner and a trace-replay simulator.
//!
//! Modules: [`series`], [`ingest`] and [`calendar`] (demand series from usage and traces),
//! [`features`], [`model`] and [`chain`] (the linfa model and its fallbacks, with
//! [`occupancy`], the probability that anyone comes), [`eval`] and
//! [`metrics`] (the evaluation protocol), [`planner`] (capacity for hourly-billed nodes),
//! [`hetzner`] (the Hetzner Cloud provisioner), [`sim`] (trace replay), [`chart`] (with its bitmap [`font`]) and
//! [`cli`] (what `warden forecast` prints), [`error`].

pub mod calendar;
pub mod chain;
pub mod chart;
pub mod cli;
pub mod error;
pub mod eval;
pub mod features;
pub mod font;
pub mod hetzner;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod occupancy;
pub mod planner;
pub mod series;
pub mod sim;

pub use error::{Error, Result};
