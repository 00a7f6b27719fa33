//! The wake lock on Redis: a key with a TTL held by a token, and a fencing epoch
//! handed out with it in the same script. An acquire whose outcome is unknown (Redis
//! went away, or no replica acknowledged it) gives the lock back if it got it, so an
//! unanswered acquire does not keep every appliance from waking the server until the
//! lease runs out.

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
        let acquired = self
            .invoke(
                &self.scripts.wake_acquire,
                &[self.keys.wake(server), self.keys.wake_epoch(server)],
                &[token.clone(), ttl.as_millis().max(1).to_string()],
                false,
            )
            .await;
        let epoch: Option<u64> = match acquired {
            Err(e) if e.is_unavailable() => {
                let _ = self.give_back(server, &token).await;
                return Err(e);
            }
            other => other?,
        };
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
        self.give_back(&lease.server, &lease.token).await
    }
}

impl RedisStore {
    /// Deletes the wake lock of `server` if `token` holds it.
    async fn give_back(&self, server: &str, token: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .invoke(
                &self.scripts.wake_release,
                &[self.keys.wake(server)],
                &[token.to_string()],
                false,
            )
            .await?;
        Ok(n == 1)
    }
}
