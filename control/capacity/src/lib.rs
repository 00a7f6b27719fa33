//! Live capacity: the fleet buys cloud nodes before demand arrives and gives them back
//! after it passed. One controller decides per fleet ([`leader`]); each round it reads the
//! fleet's own records, keeps the hourly demand [`history`], forecasts it with
//! `warden-forecast`, decides with the pure [`plan`], and acts through the [`cloud`]. What
//! it decided is on the API's event feed, the webhooks, `/v1/capacity` ([`view`]) and the
//! [`metrics`].
//!
//! New nodes join the fleet by themselves (their cloud-init user data carries the config);
//! nodes leave only drained and empty, near the end of their paid hour.

pub mod cloud;
pub mod controller;
pub mod history;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod settings;
pub mod view;

pub use controller::{Announce, Controller};
pub use settings::CapacitySettings;
pub use view::CapacityView;

/// Why the controller could not do something.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error("{0}")]
    Config(String),
    #[error("cloud: {0}")]
    Cloud(String),
    #[error(transparent)]
    Store(#[from] warden_store::StoreError),
}
