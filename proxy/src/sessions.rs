//! Live player sessions, counted by Warden itself.
//!
//! Idle detection must come from the proxy's own count, not a status poll: a poll that
//! misses a player gets them kicked by an auto-sleep (mc-router #507). Each proxied session
//! holds a [`SessionGuard`]; dropping it (the relay ended, however it ended) decrements.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use prometheus::IntGaugeVec;

use crate::route::ServerId;

/// One player on one server.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: u64,
    pub server: ServerId,
    pub player: String,
    pub uuid: Option<u128>,
    pub started: SystemTime,
    /// The client's protocol version (whether it can be transferred: 766+).
    pub protocol: i32,
    /// Where the client connected: the handshake's (normalized) host and port, which is
    /// where a warm-swap restart sends it back to.
    pub joined_via: (String, u16),
}

/// Who a new session belongs to.
pub struct NewSession {
    pub player: String,
    pub uuid: Option<u128>,
    pub protocol: i32,
    pub joined_via: (String, u16),
}

/// Told about every session that opens and closes (the control plane records them for
/// usage, and sums them across appliances for idle detection). Must not block.
pub trait SessionObserver: Send + Sync {
    fn opened(&self, session: &SessionInfo);
    fn closed(&self, session: &SessionInfo);
}

#[derive(Default)]
struct Inner {
    live: HashMap<u64, SessionInfo>,
    per_server: HashMap<ServerId, usize>,
}

/// Registry of live sessions, shared by the edge and the control plane.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Mutex<Inner>>,
    next_id: Arc<AtomicU64>,
    gauge: Option<IntGaugeVec>,
    observer: Arc<parking_lot::RwLock<Option<Arc<dyn SessionObserver>>>>,
}

impl Sessions {
    pub fn new(gauge: Option<IntGaugeVec>) -> Self {
        Self {
            inner: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            gauge,
            observer: Arc::default(),
        }
    }

    /// Installs the observer told about every session from now on.
    pub fn observe(&self, observer: Arc<dyn SessionObserver>) {
        *self.observer.write() = Some(observer);
    }

    /// Records a session; it ends when the guard drops.
    pub fn open(&self, server: ServerId, who: NewSession) -> SessionGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let info = SessionInfo {
            id,
            server: server.clone(),
            player: who.player,
            uuid: who.uuid,
            started: SystemTime::now(),
            protocol: who.protocol,
            joined_via: who.joined_via,
        };
        if let Some(o) = self.observer.read().as_ref() {
            o.opened(&info);
        }
        {
            let mut inner = self.inner.lock();
            inner.live.insert(id, info);
            *inner.per_server.entry(server.clone()).or_default() += 1;
        }
        if let Some(g) = &self.gauge {
            g.with_label_values(&[&*server]).inc();
        }
        SessionGuard {
            sessions: self.clone(),
            id,
            server,
        }
    }

    /// Live sessions on `server`.
    pub fn count(&self, server: &str) -> usize {
        self.inner
            .lock()
            .per_server
            .get(server)
            .copied()
            .unwrap_or(0)
    }

    /// All live sessions.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.inner.lock().live.values().cloned().collect()
    }

    pub fn total(&self) -> usize {
        self.inner.lock().live.len()
    }

    fn close(&self, id: u64, server: &ServerId) {
        let closed = {
            let mut inner = self.inner.lock();
            let info = inner.live.remove(&id);
            if let Some(n) = inner.per_server.get_mut(server) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    inner.per_server.remove(server);
                }
            }
            info
        };
        if let (Some(o), Some(info)) = (self.observer.read().as_ref(), closed) {
            o.closed(&info);
        }
        if let Some(g) = &self.gauge {
            g.with_label_values(&[&**server]).dec();
        }
    }
}

/// Keeps a session counted while it lives.
pub struct SessionGuard {
    sessions: Sessions,
    id: u64,
    server: ServerId,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.close(self.id, &self.server);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str) -> NewSession {
        NewSession {
            player: name.into(),
            uuid: None,
            protocol: 769,
            joined_via: ("a.example".into(), 25565),
        }
    }

    #[test]
    fn guards_count_and_release() {
        let s = Sessions::new(None);
        let a: ServerId = Arc::from("a");
        let g1 = s.open(a.clone(), who("p1"));
        let g2 = s.open(a.clone(), who("p2"));
        assert_eq!(s.count("a"), 2);
        drop(g1);
        assert_eq!(s.count("a"), 1);
        drop(g2);
        assert_eq!(s.count("a"), 0);
        assert_eq!(s.total(), 0);
    }
}
