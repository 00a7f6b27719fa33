//! Hetzner Cloud: a bounded, rate-limit-aware client of the public API
//! (`api`) and the provisioner that turns planner decisions into servers
//! (`provision`), with a dry-run mode that only logs.

pub mod api;
pub mod provision;

pub use api::{Client, ClientConfig};
pub use provision::{Candidate, Provisioner, ProvisionerConfig};
