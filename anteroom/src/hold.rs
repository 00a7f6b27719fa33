//! One guest's stay: offline login, the configuration hold, and the way out.
//!
//! ```text
//! Login Success ─▶ login_acknowledged ─▶ configuration:
//!     keep-alive every `keepalive` (one outstanding, answered within `keepalive_timeout`;
//!     the first answer proves a real client: `proven` is told)
//!     dialog on 1.21.6+, refreshed when the status changes
//!     Ready  ─▶ Store Cookie(ticket) + Transfer ─▶ close      = Transferred
//!     Failed ─▶ Disconnect(reason) ─▶ close                  = Failed
//! ```
//!
//! The whole stay is one future with small state: the socket, a read buffer that is empty
//! while idle, the status receiver and a few timestamps. Nothing is spawned per guest.

use std::future::Future;
use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::BytesMut;
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep_until, timeout, Instant};
use warden_wire::ticket::{Ticket, COOKIE_KEY};

use warden_wire::configuration::{
    Disconnect, KeepAlive, Serverbound, ShowDialog, StoreCookie, Transfer,
};
use warden_wire::login::{LoginAcknowledged, LoginSuccess};
use warden_wire::{Decode, Encode};

use crate::conn::{Conn, ConnError};
use crate::{offline, text, AnteroomSettings, Destination, Guest, Outcome, WaitStatus};

/// More serverbound packets than this between two keep-alives is a flood, not a client
/// (a vanilla client sends a handful in all of configuration).
const MAX_PACKETS_PER_KEEPALIVE: u32 = 256;

/// Builds the hold. Not an `async fn`: the guest is taken apart here, before the future
/// exists, so the future stores each piece once (an `async fn` keeps its arguments and the
/// locals moved out of them side by side).
pub fn run(
    settings: &AnteroomSettings,
    guest: Guest,
    dest: Destination,
    mut status: watch::Receiver<WaitStatus>,
    proven: Option<oneshot::Sender<()>>,
) -> impl Future<Output = Outcome> + Send + '_ {
    let started = Instant::now();
    let Guest {
        client,
        received,
        protocol,
        name,
        uuid,
        addr,
    } = guest;
    let uuid = uuid.unwrap_or_else(|| offline::offline_uuid(&name));
    let mut stay = Stay {
        settings,
        dest,
        addr,
        conn: Conn::new(client, settings.max_packet, settings.write_timeout),
        dialogs: protocol >= warden_wire::version::V1_21_6,
        shown: None,
        proven,
    };
    let replayed = stay.conn.replay(&received);
    drop(received);
    async move {
        let outcome = match replayed {
            Err(e) => Outcome::ProtocolError(format!("login bytes: {e}")),
            Ok(()) => {
                stay.run(
                    &mut status,
                    started,
                    Login {
                        protocol,
                        uuid,
                        name: &name,
                    },
                )
                .await
            }
        };
        tracing::info!(
            ?outcome,
            waited_ms = started.elapsed().as_millis() as u64,
            "anteroom hold ended"
        );
        outcome
    }
}

/// What Login Success needs.
struct Login<'a> {
    protocol: i32,
    uuid: u128,
    name: &'a str,
}

fn conn_outcome(e: ConnError) -> Outcome {
    match e {
        ConnError::Closed | ConnError::Io(_) => Outcome::ClientLeft,
        ConnError::WriteStalled(_) => Outcome::TimedOut,
        ConnError::Wire(w) => Outcome::ProtocolError(w.to_string()),
    }
}

/// What woke the configuration loop.
enum Event {
    Status(bool),
    Frame(Result<bytes::Bytes, ConnError>),
    KeepAliveDue,
    Deadline,
}

struct Stay<'a> {
    settings: &'a AnteroomSettings,
    dest: Destination,
    addr: SocketAddr,
    conn: Conn,
    dialogs: bool,
    /// The status the current dialog shows.
    shown: Option<WaitStatus>,
    /// Told when the first keep-alive is answered.
    proven: Option<oneshot::Sender<()>>,
}

impl Stay<'_> {
    async fn run(
        &mut self,
        status: &mut watch::Receiver<WaitStatus>,
        started: Instant,
        login: Login<'_>,
    ) -> Outcome {
        // Already failed: answer in the login state, no need to log in first.
        let first = status.borrow_and_update().clone();
        if let WaitStatus::Failed(reason) = first {
            let msg = text::failed(&self.dest.server_name, &reason);
            let refuse = async {
                self.conn
                    .send(&warden_wire::disconnect_packet(&msg))
                    .await?;
                self.conn.close(self.settings.linger).await;
                Ok::<_, ConnError>(())
            };
            return match Box::pin(refuse).await {
                Ok(()) => Outcome::Failed(reason),
                Err(e) => conn_outcome(e),
            };
        }
        let conn = &mut self.conn;
        let log_in = async {
            conn.send(&LoginSuccess::new(login.protocol, login.uuid, login.name).frame())
                .await?;
            let body = conn.read_frame().await?;
            LoginAcknowledged::decode(&body)?;
            Ok::<_, ConnError>(())
        };
        // Boxed, like every other path taken once per guest, so that only the idle wait in
        // configuration sizes the future that lives for the whole stay.
        match Box::pin(timeout(self.settings.login_timeout, log_in)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return conn_outcome(e),
            Err(_) => return Outcome::TimedOut,
        }
        tracing::debug!("in configuration");
        self.configuration(status, started).await
    }

    async fn configuration(
        &mut self,
        status: &mut watch::Receiver<WaitStatus>,
        started: Instant,
    ) -> Outcome {
        let s = self.settings;
        let deadline = started + s.max_wait;
        let mut next_keepalive = Instant::now();
        let mut pending: Option<(i64, Instant)> = None;
        let mut packets = 0u32;
        let mut current = status.borrow_and_update().clone();
        loop {
            match current {
                WaitStatus::Ready => return Box::pin(self.transfer()).await,
                WaitStatus::Failed(reason) => {
                    let msg = text::failed(&self.dest.server_name, &reason);
                    return Box::pin(self.disconnect(&msg, Outcome::Failed(reason))).await;
                }
                WaitStatus::Waiting { .. } => {
                    if let Err(e) = Box::pin(self.show(&current)).await {
                        return conn_outcome(e);
                    }
                }
            }
            let wake = pending.map_or(next_keepalive, |(_, sent)| sent + s.keepalive_timeout);
            let event = tokio::select! {
                changed = status.changed() => Event::Status(changed.is_ok()),
                frame = self.conn.read_frame() => Event::Frame(frame),
                _ = sleep_until(wake) => Event::KeepAliveDue,
                _ = sleep_until(deadline) => Event::Deadline,
            };
            match event {
                Event::Status(true) => current = status.borrow_and_update().clone(),
                Event::Status(false) => {
                    let outcome = Outcome::Failed("status channel closed".into());
                    return Box::pin(self.disconnect(text::UNAVAILABLE, outcome)).await;
                }
                Event::Frame(Err(e)) => return conn_outcome(e),
                Event::Frame(Ok(body)) => {
                    packets += 1;
                    if packets > MAX_PACKETS_PER_KEEPALIVE {
                        return Outcome::ProtocolError("packet flood".into());
                    }
                    match Serverbound::decode(&body) {
                        Ok(Serverbound::KeepAlive(KeepAlive { id })) => {
                            if pending.is_some_and(|(want, _)| want == id) {
                                pending = None;
                                if let Some(tx) = self.proven.take() {
                                    let _ = tx.send(());
                                }
                            }
                        }
                        Ok(Serverbound::Other(id)) => tracing::trace!(id, "ignored packet"),
                        Err(e) => return Outcome::ProtocolError(e.to_string()),
                    }
                }
                Event::KeepAliveDue => {
                    if pending.is_some() {
                        tracing::debug!("no keep-alive reply");
                        return Outcome::TimedOut;
                    }
                    let now = Instant::now();
                    let id = now.duration_since(started).as_millis() as i64;
                    if let Err(e) = Box::pin(self.conn.send(&KeepAlive { id }.frame())).await {
                        return conn_outcome(e);
                    }
                    pending = Some((id, now));
                    next_keepalive = now + s.keepalive;
                    packets = 0;
                }
                Event::Deadline => {
                    let msg = text::gave_up(&self.dest.server_name);
                    let reason = format!("not ready after {:?}", s.max_wait);
                    return Box::pin(self.disconnect(&msg, Outcome::Failed(reason))).await;
                }
            }
        }
    }

    /// Shows (or refreshes) the dialog if the client has dialogs and the status changed.
    async fn show(&mut self, status: &WaitStatus) -> Result<(), ConnError> {
        let WaitStatus::Waiting { why, eta } = status else {
            return Ok(());
        };
        if !self.dialogs || self.shown.as_ref() == Some(status) {
            return Ok(());
        }
        let dialog = text::dialog(&self.dest.server_name, *why, *eta);
        self.conn
            .send(&ShowDialog { dialog: &dialog }.frame())
            .await?;
        self.shown = Some(status.clone());
        Ok(())
    }

    async fn transfer(&mut self) -> Outcome {
        let s = self.settings;
        let expires = SystemTime::now() + s.ticket_ttl;
        let ticket =
            match Ticket::sign(&s.ticket_key, &self.dest.server_id, self.addr.ip(), expires) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "cannot issue a ticket");
                    return self
                        .disconnect(text::INTERNAL, Outcome::Failed(format!("ticket: {e}")))
                        .await;
                }
            };
        let mut out = BytesMut::with_capacity(ticket.len() + self.dest.host.len() + 32);
        let cookie = StoreCookie {
            key: COOKIE_KEY,
            payload: &ticket,
        };
        let transfer = Transfer {
            host: &self.dest.host,
            port: self.dest.port,
        };
        out.extend_from_slice(&cookie.frame());
        out.extend_from_slice(&transfer.frame());
        if let Err(e) = self.conn.send(&out).await {
            return conn_outcome(e);
        }
        self.conn.close(s.linger).await;
        Outcome::Transferred
    }

    async fn disconnect(&mut self, message: &str, outcome: Outcome) -> Outcome {
        let reason = text::component(message);
        if let Err(e) = self
            .conn
            .send(&Disconnect { reason: &reason }.frame())
            .await
        {
            return conn_outcome(e);
        }
        self.conn.close(self.settings.linger).await;
        outcome
    }
}
