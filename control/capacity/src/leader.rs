//! One controller decides per fleet: the leader holds the store's fenced lease (the same
//! lock that lets one appliance wake a server) under a fleet-wide name, renews it every
//! few seconds and checks it again before every purchase or deletion. A leader that dies
//! is replaced once its lease runs out: within [`LEASE`] plus one [`RENEW`] poll. A
//! leader that cannot renew (the store is gone, or another took over after a pause) stops
//! deciding at once.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use warden_store::{StateStore, WakeLease};

/// How long a lease lasts unless renewed.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often the lease is renewed (and a follower tries to take it).
pub const RENEW: Duration = Duration::from_secs(3);
/// The lease's name in the store.
const NAME: &str = "capacity-controller";

pub struct Leadership {
    store: Arc<dyn StateStore>,
    me: String,
    lease: Option<WakeLease>,
}

impl Leadership {
    pub fn new(store: Arc<dyn StateStore>, me: &str) -> Self {
        Leadership {
            store,
            me: me.to_string(),
            lease: None,
        }
    }

    /// Renews the lease, or takes it if it is free: whether this appliance leads now.
    pub async fn hold(&mut self) -> bool {
        if let Some(lease) = &self.lease {
            match self.store.renew_wake(lease, LEASE).await {
                Ok(true) => return true,
                Ok(false) => {
                    warn!("capacity: lost the controller lease; another appliance decides now");
                    self.lease = None;
                }
                Err(e) => {
                    warn!(error = %e, "capacity: cannot renew the controller lease; stepping down");
                    self.lease = None;
                    return false;
                }
            }
        }
        match self.store.acquire_wake(NAME, &self.me, LEASE).await {
            Ok(Some(lease)) => {
                info!(
                    epoch = lease.fencing_epoch,
                    "capacity: this appliance is the fleet's capacity controller"
                );
                self.lease = Some(lease);
                true
            }
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "capacity: cannot reach the store for the controller lease");
                false
            }
        }
    }

    /// The lease's fencing epoch while leading.
    pub fn epoch(&self) -> Option<u64> {
        self.lease.as_ref().map(|l| l.fencing_epoch)
    }

    /// Gives the lease back (shutdown), so a follower takes over at once.
    pub async fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            let _ = self.store.release_wake(&lease).await;
        }
    }
}
