//! The wake lock of one appliance: leases in memory (`lock`), fencing epochs in redb so
//! they keep rising across restarts.

use std::time::Duration;

use async_trait::async_trait;
use redb::ReadableTable;

use super::error::Failure;
use super::tables::WAKE_EPOCHS;
use super::EmbeddedStore;
use crate::error::{check_id, StoreError};
use crate::model::{new_token, WakeLease};
use crate::store::WakeLock;

#[async_trait]
impl WakeLock for EmbeddedStore {
    async fn acquire_wake(
        &self,
        server: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<WakeLease>, StoreError> {
        check_id("server", server)?;
        let server = server.to_string();
        let token = new_token(owner);
        self.blocking(move |inner| {
            let epoch = inner.leases.try_acquire(&server, &token, ttl, || {
                // Persisted (without a version bump: a lease is not state
                // anyone re-reads) so epochs keep rising across restarts.
                let txn = inner.db.begin_write()?;
                let next = {
                    let mut t = txn.open_table(WAKE_EPOCHS)?;
                    let next = t
                        .get(server.as_str())?
                        .map_or(0, |g| g.value())
                        .saturating_add(1);
                    t.insert(server.as_str(), next)?;
                    next
                };
                txn.commit()?;
                Ok::<_, Failure>(next)
            })?;
            Ok(epoch.map(|fencing_epoch| WakeLease {
                server,
                token,
                fencing_epoch,
            }))
        })
        .await
    }

    async fn renew_wake(&self, lease: &WakeLease, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.inner.leases.renew(&lease.server, &lease.token, ttl))
    }

    async fn release_wake(&self, lease: &WakeLease) -> Result<bool, StoreError> {
        Ok(self.inner.leases.release(&lease.server, &lease.token))
    }
}
