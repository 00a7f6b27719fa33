//! Where a player carried over a QUIC link lands on the node: the edge already routed,
//! admitted and read the join; this end finds the server, connects its local backend,
//! puts a PROXY v2 header first if the server wants the player's real address (the one the
//! edge saw, not the edge's), replays the join bytes and answers the edge — `Connected`,
//! or why not, which the edge turns into the player's Disconnect. Then the bytes flow.
//!
//! Sessions are counted once, at the edge where the player connected; this end only
//! carries bytes.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use quinn::{RecvStream, SendStream};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::debug;
use warden_link::listen::Land;
use warden_link::metrics::LinkMetrics;
use warden_link::pipe::pipe;
use warden_wire::link::{Open, Reply, ReplyCode};

use crate::edge::Edge;
use crate::wire::{log_safe, proxy_protocol};

pub struct Landing {
    edge: Arc<Edge>,
    metrics: LinkMetrics,
}

impl Landing {
    pub fn new(edge: Arc<Edge>, metrics: LinkMetrics) -> Arc<Self> {
        Arc::new(Self { edge, metrics })
    }
}

async fn answer(send: &mut SendStream, code: ReplyCode, reason: String) {
    let _ = send.write_all(&Reply { code, reason }.encode()).await;
    let _ = send.finish();
}

#[async_trait::async_trait]
impl Land for Landing {
    async fn land(&self, edge: SocketAddr, open: Open, mut send: SendStream, recv: RecvStream) {
        let snap = self.edge.snapshot();
        let s = &snap.settings;
        let Some(server) = snap.table.server(&open.server).cloned() else {
            let why = format!("no server `{}` on this node", log_safe(&open.server));
            return answer(&mut send, ReplyCode::UnknownServer, why).await;
        };
        if self.edge.lifecycle().backend(&server).is_some() {
            let why = format!("`{}` runs on another node now", server.id);
            return answer(&mut send, ReplyCode::NotHere, why).await;
        }
        let mut backend =
            match timeout(s.connect_timeout, TcpStream::connect(&*server.backend)).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    debug!(server = %server.id, error = %e, "backend refused a linked player");
                    return answer(&mut send, ReplyCode::Unreachable, e.to_string()).await;
                }
                Err(_) => {
                    return answer(
                        &mut send,
                        ReplyCode::Unreachable,
                        "no answer in time".into(),
                    )
                    .await
                }
            };
        let _ = backend.set_nodelay(true);
        let mut preamble = BytesMut::with_capacity(64 + open.join.len());
        if server.proxy_protocol {
            if let Ok(dst) = backend.peer_addr() {
                preamble.extend_from_slice(&proxy_protocol::encode_v2(open.player, dst));
            }
        }
        preamble.extend_from_slice(&open.join);
        if backend.write_all(&preamble).await.is_err() {
            let why = "the backend closed the connection".to_string();
            return answer(&mut send, ReplyCode::Unreachable, why).await;
        }
        if send.write_all(&Reply::connected().encode()).await.is_err() {
            return;
        }
        let label = edge.ip().to_string();
        let streams = self.metrics.streams.with_label_values(&[&label]);
        streams.inc();
        let (from_edge, to_edge) = (
            self.metrics.bytes.with_label_values(&[&label, "from_edge"]),
            self.metrics.bytes.with_label_values(&[&label, "to_edge"]),
        );
        let (ended, moved) = pipe(
            &mut backend,
            send,
            recv,
            s.idle_timeout,
            &to_edge,
            &from_edge,
        )
        .await;
        streams.dec();
        debug!(server = %server.id, %edge, ?ended, ?moved, "linked session ended");
    }
}
