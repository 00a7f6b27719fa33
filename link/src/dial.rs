//! The edge's end: one warm QUIC connection per node, made before a player needs it
//! ([`Dialer::keep`] is told the fleet's nodes), kept alive under the idle timeout, and
//! made again after a loss with exponential backoff and jitter. Opening a player's stream
//! on a warm link costs no round trip: the stream rides on its first frame.
//!
//! While a node's link is down or backing off, [`Dialer::open`] fails at once, so the
//! edge falls back to plain TCP for that player instead of waiting.
//!
//! Each connection also carries the link's control stream ([`crate::control`]): what the
//! node last [`Dialer::told`] of its servers, and [`Dialer::ask`] for wakes and sleeps.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::time::{timeout, Instant};
use tracing::{info, warn};

use crate::control::{Ask, EdgeEnd, Told};
use crate::metrics::{classify, LinkMetrics};
use crate::pki::{name_of, Role};
use crate::tls::Tls;
use crate::LinkError;

/// A connection attempt gives up after this long (the player then goes over TCP).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a live link's round-trip time is published.
const RTT_EVERY: Duration = Duration::from_secs(2);

pub struct Dialer {
    endpoint: Endpoint,
    links: Mutex<HashMap<String, Arc<Link>>>,
    metrics: LinkMetrics,
    /// Nodes this edge has had a link to: a new link to one of them is a reconnect, also
    /// when the node left the fleet in between (its lease lapsed) and came back.
    known: Mutex<std::collections::HashSet<String>>,
}

/// One node's link.
struct Link {
    node: String,
    addr: Mutex<String>,
    current: Mutex<Option<Connection>>,
    /// One dial at a time; players arriving meanwhile wait for it.
    dialing: tokio::sync::Mutex<()>,
    /// Consecutive failures, and when the next attempt may start.
    backoff: Mutex<(u32, Option<Instant>)>,
    /// A task watches this link (one at most).
    watched: AtomicBool,
    /// The current connection's control stream.
    control: Mutex<Option<Arc<EdgeEnd>>>,
}

impl Link {
    fn alive(&self) -> Option<Connection> {
        self.current
            .lock()
            .as_ref()
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    fn waiting(&self) -> Option<Duration> {
        let (_, until) = *self.backoff.lock();
        until.and_then(|u| u.checked_duration_since(Instant::now()))
    }

    fn failed(&self) {
        let mut b = self.backoff.lock();
        b.0 = b.0.saturating_add(1);
        let base = FIRST_BACKOFF
            .saturating_mul(1u32 << b.0.min(8).saturating_sub(1))
            .min(MAX_BACKOFF);
        // Up to a quarter more, so edges do not all come back in the same instant.
        let mut r = [0u8; 2];
        let jitter = match getrandom::fill(&mut r) {
            Ok(()) => base.mul_f64(f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX) / 4.0),
            Err(_) => Duration::ZERO,
        };
        b.1 = Some(Instant::now() + base + jitter);
    }
}

impl Dialer {
    /// Must run inside a tokio runtime.
    pub fn new(tls: &Tls, metrics: LinkMetrics) -> Result<Arc<Self>, LinkError> {
        let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
        let mut endpoint = Endpoint::client(bind)
            .map_err(|e| LinkError::io("opening the link's UDP socket", e))?;
        endpoint.set_default_client_config(tls.client.clone());
        Ok(Arc::new(Self {
            endpoint,
            links: Mutex::new(HashMap::new()),
            metrics,
            known: Mutex::default(),
        }))
    }

    pub fn metrics(&self) -> &LinkMetrics {
        &self.metrics
    }

    /// Whether the link to `node` is connected now.
    pub fn is_up(&self, node: &str) -> bool {
        self.links
            .lock()
            .get(node)
            .is_some_and(|l| l.alive().is_some())
    }

    /// A new stream to `node` (reached at `addr`, `host:port`): on the warm link, or after
    /// one connection attempt if there is none; an error at once while backing off.
    pub async fn open(
        self: &Arc<Self>,
        node: &str,
        addr: &str,
    ) -> Result<(SendStream, RecvStream), LinkError> {
        let conn = self.connection(node, addr).await?;
        conn.open_bi().await.map_err(|e| LinkError::Connect {
            node: node.to_string(),
            addr: addr.to_string(),
            why: e.to_string(),
        })
    }

    /// What `node` last said of `server` on the link's control stream; None while there is
    /// no open control stream to it, or it said nothing of that server.
    pub fn told(&self, node: &str, server: &str) -> Option<Arc<Told>> {
        let link = self.links.lock().get(node).cloned()?;
        link.alive()?;
        let control = link.control.lock().clone()?;
        control.told(server)
    }

    /// Asks `node` over the control stream to do `ask`, and waits (at most
    /// [`crate::control::ASK_TIMEOUT`]) for it to be taken: `Ok(Err(why))` when the node
    /// refused, `Err` when it could not be asked (the caller goes another way).
    pub async fn ask(&self, node: &str, ask: &Ask) -> Result<Result<(), String>, LinkError> {
        let control = self
            .links
            .lock()
            .get(node)
            .filter(|l| l.alive().is_some())
            .and_then(|l| l.control.lock().clone())
            .filter(|c| c.is_open());
        let answer = match control {
            Some(c) => c.ask(ask).await,
            None => Err(LinkError::Stream(format!("no control stream to {node}"))),
        };
        let result = match &answer {
            Ok(Ok(())) => "taken",
            Ok(Err(_)) => "refused",
            Err(_) => "failed",
        };
        self.metrics
            .requests
            .with_label_values(&[node, ask.kind(), result])
            .inc();
        answer
    }

    /// Keeps a warm link to each of `nodes` (`(id, host:port)`), and drops the links to
    /// nodes no longer listed.
    pub fn keep(self: &Arc<Self>, nodes: &[(String, String)]) {
        let mut links = self.links.lock();
        links.retain(|id, link| {
            let kept = nodes.iter().any(|(n, _)| n == id);
            if !kept {
                if let Some(c) = link.current.lock().take() {
                    c.close(0u32.into(), b"node left the fleet");
                }
                self.metrics.up.with_label_values(&[id]).set(0);
            }
            kept
        });
        drop(links);
        for (node, addr) in nodes {
            let link = self.link(node, addr);
            if link.alive().is_some() || link.waiting().is_some() {
                continue;
            }
            let (me, node, addr) = (self.clone(), node.clone(), addr.clone());
            tokio::spawn(async move {
                let _ = me.connection(&node, &addr).await;
            });
        }
    }

    fn link(&self, node: &str, addr: &str) -> Arc<Link> {
        let mut links = self.links.lock();
        let link = links.entry(node.to_string()).or_insert_with(|| {
            Arc::new(Link {
                node: node.to_string(),
                addr: Mutex::new(addr.to_string()),
                current: Mutex::new(None),
                dialing: tokio::sync::Mutex::new(()),
                backoff: Mutex::new((0, None)),
                watched: AtomicBool::new(false),
                control: Mutex::new(None),
            })
        });
        let mut a = link.addr.lock();
        if *a != addr {
            // The node moved: the next dial goes to its new address.
            *a = addr.to_string();
            *link.backoff.lock() = (0, None);
        }
        drop(a);
        link.clone()
    }

    async fn connection(self: &Arc<Self>, node: &str, addr: &str) -> Result<Connection, LinkError> {
        let link = self.link(node, addr);
        if let Some(c) = link.alive() {
            return Ok(c);
        }
        let conn = self.dial(&link).await?;
        if !link.watched.swap(true, Ordering::AcqRel) {
            tokio::spawn(watch(self.clone(), link));
        }
        Ok(conn)
    }

    /// One connection attempt (or the one another caller is making), unless backing off.
    async fn dial(&self, link: &Link) -> Result<Connection, LinkError> {
        let _one = link.dialing.lock().await;
        if let Some(c) = link.alive() {
            return Ok(c);
        }
        let node = link.node.as_str();
        if let Some(wait) = link.waiting() {
            return Err(LinkError::BackingOff {
                node: node.to_string(),
                wait,
            });
        }
        let addr = link.addr.lock().clone();
        let err = |why: String| LinkError::Connect {
            node: node.to_string(),
            addr: addr.clone(),
            why,
        };
        let target = match tokio::net::lookup_host(addr.as_str()).await {
            Ok(mut a) => a.find(|a| a.is_ipv4()),
            Err(e) => {
                link.failed();
                return Err(err(format!("resolving: {e}")));
            }
        };
        let Some(target) = target else {
            link.failed();
            return Err(err("no IPv4 address".into()));
        };
        let connecting = self
            .endpoint
            .connect(target, &name_of(Role::Node, node))
            .map_err(|e| err(e.to_string()))?;
        let conn = match timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let reason = classify(&e.to_string());
                self.metrics.failed(reason);
                link.failed();
                warn!(node, addr, reason, error = %e, "link handshake failed");
                return Err(err(e.to_string()));
            }
            Err(_) => {
                self.metrics.failed("timeout");
                link.failed();
                return Err(err(format!("no handshake within {CONNECT_TIMEOUT:?}")));
            }
        };
        *link.backoff.lock() = (0, None);
        if !self.known.lock().insert(node.to_string()) {
            self.metrics.reconnects.with_label_values(&[node]).inc();
        }
        info!(
            node,
            addr,
            rtt_ms = conn.rtt().as_millis() as u64,
            "link up"
        );
        let control = match EdgeEnd::open(node, &conn).await {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(node, error = %e, "no control stream on the link: pings and wakes go the long way");
                None
            }
        };
        *link.control.lock() = control;
        *link.current.lock() = Some(conn.clone());
        self.metrics.up.with_label_values(&[node]).set(1);
        Ok(conn)
    }
}

/// While the node is wanted: publishes the link's round-trip time, notices its loss, and
/// makes it again after the backoff.
async fn watch(dialer: Arc<Dialer>, link: Arc<Link>) {
    let node = link.node.clone();
    loop {
        if let Some(conn) = link.alive() {
            loop {
                dialer
                    .metrics
                    .rtt
                    .with_label_values(&[&node])
                    .set(conn.rtt().as_secs_f64());
                tokio::select! {
                    reason = conn.closed() => {
                        warn!(node, reason = %reason, "link lost");
                        dialer.metrics.up.with_label_values(&[&node]).set(0);
                        link.failed();
                        break;
                    }
                    _ = tokio::time::sleep(RTT_EVERY) => {}
                }
            }
        }
        let wanted = dialer
            .links
            .lock()
            .get(&node)
            .is_some_and(|l| Arc::ptr_eq(l, &link));
        if !wanted {
            link.watched.store(false, Ordering::Release);
            return;
        }
        tokio::time::sleep(link.waiting().unwrap_or(RTT_EVERY)).await;
        let _ = dialer.dial(&link).await;
    }
}
