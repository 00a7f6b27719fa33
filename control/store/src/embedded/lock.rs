//! The wake lock for a single appliance: an in-process lease table. Leases do
//! not survive a restart (nothing is starting a server after a restart until
//! reconcile runs), but the fencing epoch does, so a lease handed out after a
//! restart still outranks every lease handed out before it.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

struct Held {
    token: String,
    expires: Instant,
}

#[derive(Default)]
pub(crate) struct LeaseTable {
    held: Mutex<HashMap<String, Held>>,
}

impl LeaseTable {
    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<String, Held>> {
        // A panic elsewhere while holding the lock leaves the map consistent
        // (every update is a single insert or remove), so keep using it.
        self.held.lock()
    }

    /// Takes the lease if nobody holds an unexpired one. `next_epoch` runs
    /// under the table lock so epochs are handed out in acquisition order;
    /// if it fails, the lease is not taken.
    pub(crate) fn try_acquire<E>(
        &self,
        server: &str,
        token: &str,
        ttl: Duration,
        next_epoch: impl FnOnce() -> Result<u64, E>,
    ) -> Result<Option<u64>, E> {
        let mut held = self.lock();
        let now = Instant::now();
        if held.get(server).is_some_and(|h| h.expires > now) {
            return Ok(None);
        }
        let epoch = next_epoch()?;
        held.insert(
            server.to_string(),
            Held {
                token: token.to_string(),
                expires: now + ttl,
            },
        );
        Ok(Some(epoch))
    }

    pub(crate) fn renew(&self, server: &str, token: &str, ttl: Duration) -> bool {
        let mut held = self.lock();
        let now = Instant::now();
        match held.get_mut(server) {
            Some(h) if h.token == token && h.expires > now => {
                h.expires = now + ttl;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn release(&self, server: &str, token: &str) -> bool {
        let mut held = self.lock();
        let now = Instant::now();
        match held.get(server) {
            Some(h) if h.token == token => {
                let live = h.expires > now;
                held.remove(server);
                live
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_until_released_or_expired() {
        let t = LeaseTable::default();
        let mut n = 0u64;
        let mut next = || -> Result<u64, ()> {
            n += 1;
            Ok(n)
        };
        assert_eq!(
            t.try_acquire("s", "a", Duration::from_secs(5), &mut next),
            Ok(Some(1))
        );
        assert_eq!(
            t.try_acquire("s", "b", Duration::from_secs(5), &mut next),
            Ok(None)
        );
        assert!(!t.release("s", "b"));
        assert!(t.renew("s", "a", Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            !t.renew("s", "a", Duration::from_secs(5)),
            "expired lease renewed"
        );
        assert_eq!(
            t.try_acquire("s", "b", Duration::from_secs(5), &mut next),
            Ok(Some(2))
        );
        assert!(!t.release("s", "a"));
        assert!(t.release("s", "b"));
    }

    #[test]
    fn failing_epoch_does_not_take_the_lease() {
        let t = LeaseTable::default();
        assert_eq!(
            t.try_acquire("s", "a", Duration::from_secs(5), || Err("disk")),
            Err("disk")
        );
        assert_eq!(
            t.try_acquire("s", "b", Duration::from_secs(5), || Ok::<_, ()>(7)),
            Ok(Some(7))
        );
    }
}
