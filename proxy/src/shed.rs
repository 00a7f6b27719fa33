//! Load shedding: which connection makes room when the edge is full.
//!
//! Every connection that has not been routed yet (still in its PROXY header, handshake,
//! status exchange or Login Start) is registered here in arrival order. When a new
//! connection finds the edge at its cap, the *oldest* of them is told to close: a slowloris
//! flood then only ever holds a bounded number of sockets, and a real player, who needs a
//! few milliseconds to log in, always gets in. Routed connections (players on their way to
//! a backend, or in a session) are never shed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// The pre-routing connections, oldest first.
#[derive(Default)]
pub struct Waiting {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    queue: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
    next: AtomicU64,
}

/// A connection's place in the queue; leaving it (drop or [`Slot::routed`]) makes the
/// connection exempt from shedding.
pub struct Slot {
    id: u64,
    inner: Arc<Inner>,
}

impl Waiting {
    /// Registers a new pre-routing connection. The future resolves if it is shed; it never
    /// resolves once the connection has been routed or has ended.
    pub fn enter(&self) -> (Slot, impl Future<Output = ()> + Send + 'static) {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.queue.lock().insert(id, tx);
        let shed = async move {
            if rx.await.is_err() {
                // Routed or gone: never shed.
                std::future::pending::<()>().await;
            }
        };
        (
            Slot {
                id,
                inner: self.inner.clone(),
            },
            shed,
        )
    }

    /// Tells the oldest pre-routing connection to close. False if there is none.
    pub fn shed_oldest(&self) -> bool {
        loop {
            let Some((_, tx)) = self.inner.queue.lock().pop_first() else {
                return false;
            };
            // A receiver already dropped is a connection that ended on its own: try the next.
            if tx.send(()).is_ok() {
                return true;
            }
        }
    }

    /// Pre-routing connections right now.
    pub fn len(&self) -> usize {
        self.inner.queue.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Slot {
    /// The connection is routed: it can no longer be shed. False if it was shed just
    /// before (the caller then stops).
    pub fn routed(&self) -> bool {
        self.inner.queue.lock().remove(&self.id).is_some()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inner.queue.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    #[tokio::test]
    async fn oldest_first_and_routed_ones_are_exempt() {
        let w = Waiting::default();
        let (a, shed_a) = w.enter();
        let (b, shed_b) = w.enter();
        let (_c, shed_c) = w.enter();
        assert!(a.routed(), "a was not shed yet");
        assert!(w.shed_oldest());
        // b is the oldest still waiting.
        assert!(timeout(Duration::from_millis(50), shed_b).await.is_ok());
        assert!(!b.routed(), "b was shed");
        assert!(timeout(Duration::from_millis(50), shed_a).await.is_err());
        drop(shed_c);
        // c's receiver is gone: nothing left to shed.
        assert!(!w.shed_oldest());
        assert!(w.is_empty());
    }
}
