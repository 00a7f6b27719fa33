//! The control stream, one per link, both ends. The edge opens it right after the
//! handshake ([`EdgeEnd::open`]); the node ([`serve_node`]) pushes what it can [`Tell`] of
//! its servers — each one's state and, while it is up, its Status Response — whenever that
//! changes, so the edge answers server-list pings from it without crossing the link. The
//! edge asks the node to wake or put to sleep a server ([`Ask`]) and the node answers
//! each request on the same stream: a wake no longer waits for the node's next look at the
//! store. Frames are [`warden_wire::link_control`]; every read is bounded in size.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use quinn::{Connection, RecvStream, SendStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use warden_wire::link_control::{Control, CONTROL_PREFIX, MAX_STATUS_BYTES};
use warden_wire::{parse_status_response, read_varint, StatusDoc};

use crate::LinkError;

/// How long an edge waits for the node to take a request before it falls back.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// The most servers one node may tell an edge of; more are ignored (and logged once).
const MAX_TOLD: usize = 10_000;
/// Requests a node works on at once per link; more are refused as busy.
const MAX_ASKS: usize = 64;

/// One server as the node shows it: its state's name (`active`, `sleeping`, …) and, while
/// it is up, its Status Response frame as the server sent it (empty when it had none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub state: String,
    pub status: Bytes,
}

/// What a node's servers look like now, by id.
pub type Showing = Arc<BTreeMap<String, Shown>>;

/// What the edge keeps of one server: the node's word, its status parsed once.
#[derive(Debug)]
pub struct Told {
    pub state: String,
    pub status: Option<StatusDoc>,
    pub at: Instant,
}

/// A request from an edge to a node.
#[derive(Debug, Clone)]
pub enum Ask {
    Wake { server: String },
    Sleep { server: String, force: bool },
}

impl Ask {
    pub fn kind(&self) -> &'static str {
        match self {
            Ask::Wake { .. } => "wake",
            Ask::Sleep { .. } => "sleep",
        }
    }

    fn frame(&self, request: u32) -> Control {
        match self.clone() {
            Ask::Wake { server } => Control::Wake { request, server },
            Ask::Sleep { server, force } => Control::Sleep {
                request,
                server,
                force,
            },
        }
    }
}

/// What a node tells edges and does for them (the control plane implements it).
#[async_trait::async_trait]
pub trait Tell: Send + Sync + 'static {
    /// Its servers as they are now, kept current.
    fn showing(&self) -> watch::Receiver<Showing>;
    /// Wakes a server it owns (`Err`: why not).
    async fn wake(&self, server: &str) -> Result<(), String>;
    /// Puts a server it owns to sleep (`Err`: why not).
    async fn sleep(&self, server: &str, force: bool) -> Result<(), String>;
}

async fn read(recv: &mut RecvStream) -> Result<Control, LinkError> {
    let mut head = [0u8; 4];
    recv.read_exact(&mut head)
        .await
        .map_err(|e| LinkError::Stream(e.to_string()))?;
    let len = Control::body_len(head)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| LinkError::Stream(e.to_string()))?;
    Ok(Control::decode_body(&body)?)
}

async fn write(send: &mut SendStream, frame: &Control) -> Result<(), LinkError> {
    let bytes = frame.encode()?;
    send.write_all(&bytes)
        .await
        .map_err(|e| LinkError::Stream(e.to_string()))
}

/// The edge's end of one link's control stream.
pub(crate) struct EdgeEnd {
    node: String,
    send: tokio::sync::Mutex<SendStream>,
    told: Mutex<HashMap<String, Arc<Told>>>,
    pending: Mutex<HashMap<u32, oneshot::Sender<String>>>,
    next: AtomicU32,
    open: AtomicBool,
}

impl EdgeEnd {
    /// Opens the control stream on a new connection and starts reading what the node says.
    pub(crate) async fn open(node: &str, conn: &Connection) -> Result<Arc<EdgeEnd>, LinkError> {
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| LinkError::Stream(e.to_string()))?;
        send.write_all(&CONTROL_PREFIX)
            .await
            .map_err(|e| LinkError::Stream(e.to_string()))?;
        let end = Arc::new(EdgeEnd {
            node: node.to_string(),
            send: tokio::sync::Mutex::new(send),
            told: Mutex::default(),
            pending: Mutex::default(),
            next: AtomicU32::new(1),
            open: AtomicBool::new(true),
        });
        tokio::spawn(listen(end.clone(), recv));
        Ok(end)
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn told(&self, server: &str) -> Option<Arc<Told>> {
        if !self.is_open() {
            return None;
        }
        self.told.lock().get(server).cloned()
    }

    /// Sends `ask` and waits for the node to take it: `Ok(Err(why))` when it refused.
    pub(crate) async fn ask(&self, ask: &Ask) -> Result<Result<(), String>, LinkError> {
        if !self.is_open() {
            return Err(LinkError::Stream("the control stream is closed".into()));
        }
        let request = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(request, tx);
        let sent = tokio::time::timeout(ASK_TIMEOUT, async {
            write(&mut *self.send.lock().await, &ask.frame(request)).await
        })
        .await;
        let answer = match sent {
            Ok(Ok(())) => tokio::time::timeout(ASK_TIMEOUT, rx).await,
            Ok(Err(e)) => {
                self.pending.lock().remove(&request);
                return Err(e);
            }
            Err(_) => {
                self.pending.lock().remove(&request);
                return Err(LinkError::Stream(
                    "the request could not be sent in time".into(),
                ));
            }
        };
        self.pending.lock().remove(&request);
        match answer {
            Ok(Ok(error)) if error.is_empty() => Ok(Ok(())),
            Ok(Ok(error)) => Ok(Err(error)),
            Ok(Err(_)) => Err(LinkError::Stream("the control stream closed".into())),
            Err(_) => Err(LinkError::Stream(format!(
                "{} did not answer within {ASK_TIMEOUT:?}",
                self.node
            ))),
        }
    }
}

/// Reads the node's frames until the stream ends; then forgets everything it said.
async fn listen(end: Arc<EdgeEnd>, mut recv: RecvStream) {
    let mut full = false;
    let why = loop {
        match read(&mut recv).await {
            Ok(Control::Status {
                server,
                state,
                status,
            }) => {
                let mut told = end.told.lock();
                if told.len() >= MAX_TOLD && !told.contains_key(&server) {
                    if !full {
                        warn!(node = %end.node, "the node tells of more than {MAX_TOLD} servers; ignoring the rest");
                        full = true;
                    }
                    continue;
                }
                let status = parse_frame(&status);
                let at = Instant::now();
                told.insert(server, Arc::new(Told { state, status, at }));
            }
            Ok(Control::Gone { server }) => {
                end.told.lock().remove(&server);
            }
            Ok(Control::Done { request, error }) => {
                if let Some(tx) = end.pending.lock().remove(&request) {
                    let _ = tx.send(error);
                }
            }
            Ok(other) => break format!("unexpected frame from the node: {other:?}"),
            Err(e) => break e.to_string(),
        }
    };
    debug!(node = %end.node, %why, "control stream ended");
    end.open.store(false, Ordering::Release);
    end.told.lock().clear();
    end.pending.lock().clear();
}

/// A Status Response frame (length prefix, packet, JSON) parsed; None when empty or not
/// one (the edge then asks the server the usual way).
fn parse_frame(frame: &[u8]) -> Option<StatusDoc> {
    let (len, at) = read_varint(frame).ok()?;
    let body = frame.get(at..)?;
    if usize::try_from(len).ok()? != body.len() {
        return None;
    }
    parse_status_response(body, MAX_STATUS_BYTES).ok()
}

/// The node's end of one control stream (the edge at `from` opened it): pushes every
/// change of what `tell` shows, and answers the edge's requests, until the stream ends.
pub(crate) async fn serve_node(
    from: SocketAddr,
    mut send: SendStream,
    mut recv: RecvStream,
    tell: Arc<dyn Tell>,
) {
    let (out, mut queue) = mpsc::channel::<Control>(256);
    let asks = Arc::new(Semaphore::new(MAX_ASKS));
    let writer = async {
        while let Some(frame) = queue.recv().await {
            let bytes = match frame.encode() {
                Ok(b) => b,
                Err(e) => {
                    warn!(%from, error = %e, "a control frame that cannot be sent; skipped");
                    continue;
                }
            };
            if let Err(e) = send.write_all(&bytes).await {
                debug!(%from, error = %e, "control stream closed while writing");
                return;
            }
        }
    };
    let pusher = push(tell.showing(), out.clone());
    let reader = async {
        loop {
            let (request, ask) = match read(&mut recv).await {
                Ok(Control::Wake { request, server }) => (request, Ask::Wake { server }),
                Ok(Control::Sleep {
                    request,
                    server,
                    force,
                }) => (request, Ask::Sleep { server, force }),
                Ok(other) => {
                    warn!(%from, frame = ?other, "unexpected frame from an edge; closing its control stream");
                    return;
                }
                Err(e) => {
                    debug!(%from, error = %e, "control stream from an edge ended");
                    return;
                }
            };
            let Ok(permit) = asks.clone().try_acquire_owned() else {
                let error = format!("the node is busy with {MAX_ASKS} requests from this edge");
                if out.send(Control::Done { request, error }).await.is_err() {
                    return;
                }
                continue;
            };
            let (tell, out) = (tell.clone(), out.clone());
            tokio::spawn(async move {
                info!(%from, kind = ask.kind(), ?ask, "request from an edge");
                let done = match &ask {
                    Ask::Wake { server } => tell.wake(server).await,
                    Ask::Sleep { server, force } => tell.sleep(server, *force).await,
                };
                let error = done.err().unwrap_or_default();
                let _ = out.send(Control::Done { request, error }).await;
                drop(permit);
            });
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = pusher => {}
        _ = reader => {}
    }
}

/// Sends what changed in `showing` since the last push: new and changed servers, and
/// `Gone` for those no longer shown.
async fn push(mut showing: watch::Receiver<Showing>, out: mpsc::Sender<Control>) {
    let mut sent: Showing = Arc::default();
    loop {
        let now = showing.borrow_and_update().clone();
        for (server, shown) in now.iter() {
            if sent.get(server) == Some(shown) {
                continue;
            }
            // A status too large for the link is not sent: the edge asks the server itself.
            let status = match shown.status.len() <= MAX_STATUS_BYTES {
                true => shown.status.clone(),
                false => Bytes::new(),
            };
            let frame = Control::Status {
                server: server.clone(),
                state: shown.state.clone(),
                status,
            };
            if out.send(frame).await.is_err() {
                return;
            }
        }
        for server in sent.keys().filter(|s| !now.contains_key(*s)) {
            if out
                .send(Control::Gone {
                    server: server.clone(),
                })
                .await
                .is_err()
            {
                return;
            }
        }
        sent = now;
        if showing.changed().await.is_err() {
            return;
        }
    }
}
