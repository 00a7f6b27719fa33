//! The node's end: a QUIC endpoint that accepts links from edges (their certificates
//! checked in the handshake; refusals counted by reason), and on each link accepts one
//! stream per player, reads its [`Open`] frame within [`crate::OPEN_TIMEOUT`] and
//! [`warden_wire::link::MAX_OPEN_BYTES`], and hands it to whoever lands players. The
//! link's control stream (one per link) goes to [`crate::control`], which tells the edge
//! what this node's [`Tell`] shows.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use tokio::time::timeout;
use tracing::{debug, info, warn};
use warden_wire::link::{Open, PREFIX_BYTES};
use warden_wire::link_control::{stream_start, StreamStart};

use crate::control::{serve_node, Tell};
use crate::metrics::{classify, LinkMetrics};
use crate::tls::Tls;
use crate::{LinkError, OPEN_TIMEOUT};

/// Lands a player who arrived over a link: connect the backend, answer with a `Reply`,
/// then carry the bytes. Owns the stream from here on.
#[async_trait::async_trait]
pub trait Land: Send + Sync + 'static {
    async fn land(&self, edge: SocketAddr, open: Open, send: SendStream, recv: RecvStream);
}

pub struct Listener {
    endpoint: Endpoint,
    metrics: LinkMetrics,
    tell: Option<Arc<dyn Tell>>,
}

/// What a stream turned out to be.
enum Stream {
    Player(Open),
    Control,
}

impl Listener {
    /// Binds the UDP port. Must run inside a tokio runtime.
    pub fn bind(addr: SocketAddr, tls: &Tls, metrics: LinkMetrics) -> Result<Self, LinkError> {
        let endpoint = Endpoint::server(tls.server.clone(), addr)
            .map_err(|e| LinkError::io(format!("binding the link port {addr} (UDP)"), e))?;
        Ok(Self {
            endpoint,
            metrics,
            tell: None,
        })
    }

    /// Answers edges' control streams from `tell` (without it, they are refused: pings and
    /// wakes then take the long way).
    pub fn telling(mut self, tell: Arc<dyn Tell>) -> Self {
        self.tell = Some(tell);
        self
    }

    pub fn local_addr(&self) -> Result<SocketAddr, LinkError> {
        self.endpoint
            .local_addr()
            .map_err(|e| LinkError::io("the link port", e))
    }

    /// Accepts links until the endpoint is closed.
    pub async fn run(self, land: Arc<dyn Land>) {
        info!(listen = ?self.endpoint.local_addr().ok(), "link listening (QUIC)");
        while let Some(incoming) = self.endpoint.accept().await {
            let (metrics, land, tell) = (self.metrics.clone(), land.clone(), self.tell.clone());
            tokio::spawn(async move {
                let from = incoming.remote_address();
                let conn = match timeout(OPEN_TIMEOUT, incoming).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        let reason = classify(&e.to_string());
                        metrics.failed(reason);
                        warn!(%from, reason, error = %e, "link refused");
                        return;
                    }
                    Err(_) => {
                        metrics.failed("timeout");
                        return;
                    }
                };
                info!(%from, "link from an edge");
                serve(conn, from, metrics, land, tell).await;
            });
        }
    }
}

async fn serve(
    conn: Connection,
    from: SocketAddr,
    metrics: LinkMetrics,
    land: Arc<dyn Land>,
    tell: Option<Arc<dyn Tell>>,
) {
    let label = from.ip().to_string();
    let controlled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                info!(%from, reason = %e, "link from an edge ended");
                return;
            }
        };
        metrics
            .rtt
            .with_label_values(&[&label])
            .set(conn.rtt().as_secs_f64());
        let (land, tell, controlled) = (land.clone(), tell.clone(), controlled.clone());
        tokio::spawn(async move {
            let mut recv = recv;
            match timeout(OPEN_TIMEOUT, read_start(&mut recv)).await {
                Ok(Ok(Stream::Player(open))) => land.land(from, open, send, recv).await,
                Ok(Ok(Stream::Control)) => {
                    use std::sync::atomic::Ordering;
                    match tell {
                        Some(tell) if !controlled.swap(true, Ordering::AcqRel) => {
                            serve_node(from, send, recv, tell).await;
                            controlled.store(false, Ordering::Release);
                        }
                        _ => {
                            debug!(%from, "a control stream this node does not serve (none, or a second)");
                            refuse(send, recv);
                        }
                    }
                }
                Ok(Err(e)) => {
                    debug!(%from, error = %e, "bad stream on a link");
                    refuse(send, recv);
                }
                Err(_) => {
                    debug!(%from, "a stream's Open did not arrive in time");
                    refuse(send, recv);
                }
            }
        });
    }
}

fn refuse(mut send: SendStream, mut recv: RecvStream) {
    let _ = send.reset(VarInt::from_u32(2));
    let _ = recv.stop(VarInt::from_u32(2));
}

async fn read_start(recv: &mut RecvStream) -> Result<Stream, LinkError> {
    let mut prefix = [0u8; PREFIX_BYTES];
    recv.read_exact(&mut prefix)
        .await
        .map_err(|e| LinkError::Stream(e.to_string()))?;
    let len = match stream_start(&prefix)? {
        StreamStart::Control => return Ok(Stream::Control),
        StreamStart::Player { rest } => rest,
    };
    let mut rest = vec![0u8; len];
    recv.read_exact(&mut rest)
        .await
        .map_err(|e| LinkError::Stream(e.to_string()))?;
    Ok(Stream::Player(Open::decode_rest(&rest)?))
}
