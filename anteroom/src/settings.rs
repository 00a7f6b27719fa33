//! The anteroom's knobs, with defaults that match the protocol's own timings.
//!
//! Keep-alives every 10 s and a 20 s answer deadline sit inside the client's own timeout
//! (it gives up after 20–30 s without a keep-alive). The ticket only has to survive the
//! client's reconnect after Transfer, so a minute is plenty.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct AnteroomSettings {
    /// How often a configuration keep-alive is sent.
    pub keepalive: Duration,
    /// How long the client has to answer a keep-alive before it is dropped.
    pub keepalive_timeout: Duration,
    /// HMAC key for transfer tickets; the proxy verifies with the same key.
    pub ticket_key: Arc<[u8]>,
    /// How long a ticket stays valid after it is issued.
    pub ticket_ttl: Duration,
    /// The longest a player is held before being told to come back later.
    pub max_wait: Duration,
    /// Largest serverbound frame accepted (vanilla's custom payload limit is 32 KiB).
    pub max_packet: usize,
    /// How long the client has to acknowledge Login Success.
    pub login_timeout: Duration,
    /// How long a write may wait for a client that does not read.
    pub write_timeout: Duration,
    /// After Transfer or Disconnect, how long the client may take to close its side.
    pub linger: Duration,
}

impl AnteroomSettings {
    /// Defaults, with the ticket key the proxy will verify against.
    pub fn new(ticket_key: impl Into<Arc<[u8]>>) -> Self {
        Self {
            keepalive: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(20),
            ticket_key: ticket_key.into(),
            ticket_ttl: Duration::from_secs(60),
            max_wait: Duration::from_secs(15 * 60),
            max_packet: 32 * 1024,
            login_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
        }
    }
}

/// Prints everything but the key.
impl fmt::Debug for AnteroomSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnteroomSettings")
            .field("keepalive", &self.keepalive)
            .field("keepalive_timeout", &self.keepalive_timeout)
            .field(
                "ticket_key",
                &format_args!("<{} bytes>", self.ticket_key.len()),
            )
            .field("ticket_ttl", &self.ticket_ttl)
            .field("max_wait", &self.max_wait)
            .field("max_packet", &self.max_packet)
            .field("login_timeout", &self.login_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("linger", &self.linger)
            .finish()
    }
}
