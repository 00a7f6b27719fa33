//! A local fake of the Hetzner Cloud API v1 for Warden's tests, whose servers can boot
//! real `warden` node processes: one implementation for the provisioner's in-process tests
//! (forecast/tests/hetzner_fake.rs) and for end-to-end capacity tests, which run the
//! `warden-hcloud-fake` binary through [`FakeProcess`].
//!
//! Modules: [`api`] (the front door, faults, state and admin endpoints), [`routes`] (the
//! `/v1` resources), [`catalog`] (server types, prices, locations), [`images`] (system
//! images and node snapshots), [`billing`] (every started hour), [`cloudinit`]
//! (`write_files` from user data), [`machine`] (a server's process: boot and destroy),
//! [`selector`] (label selectors), [`process`] (the binary under test, killed with its
//! machines on drop).

pub mod api;
pub mod billing;
pub mod catalog;
pub mod cloudinit;
pub mod images;
pub mod machine;
pub mod process;
pub mod routes;
pub mod selector;
pub mod time;

pub use api::{Config, Fake, Faults};
pub use images::Snapshot;
pub use machine::MachinesConfig;
pub use process::{FakeOptions, FakeProcess};
