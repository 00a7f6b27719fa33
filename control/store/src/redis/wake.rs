//! The wake lock on Redis: a key with a TTL held by a token, and a fencing epoch
//! handed out with it in the same script.

use std::time::Duration;

use async_trait::async_trait;

use super::RedisStore;
use crate::error::{check_id, StoreError};
use crate::model::{new_token, WakeLease};
use crate::store::WakeLock;

#[async_trait]
impl WakeLock for RedisStore {
    async fn acquire_wake(
        &self,
        server: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<WakeLease>, StoreError> {
        check_id("server", server)?;
        let token = new_token(owner);
        let epoch: Option<u64> = self
            .invoke(
                &self.scripts.wake_acquire,
                &[self.keys.wake(server), self.keys.wake_epoch(server)],
                &[token.clone(), ttl.as_millis().max(1).to_string()],
                false,
            )
            .await?;
        Ok(epoch.map(|fencing_epoch| WakeLease {
            server: server.to_string(),
            token,
            fencing_epoch,
        }))
    }

    async fn renew_wake(&self, lease: &WakeLease, ttl: Duration) -> Result<bool, StoreError> {
        let n: i64 = self
            .invoke(
                &self.scripts.wake_renew,
                &[self.keys.wake(&lease.server)],
                &[lease.token.clone(), ttl.as_millis().max(1).to_string()],
                true,
            )
            .await?;
        Ok(n == 1)
    }

    async fn release_wake(&self, lease: &WakeLease) -> Result<bool, StoreError> {
        let n: i64 = self
            .invoke(
                &self.scripts.wake_release,
                &[self.keys.wake(&lease.server)],
                std::slice::from_ref(&lease.token),
                false,
            )
            .await?;
        Ok(n == 1)
    }
}
