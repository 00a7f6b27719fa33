//! Players coming back from the anteroom (handshake intent 3): ask for the transfer ticket
//! the anteroom stored as a cookie, and check it.
//!
//! A valid ticket for this server from this address sends the player straight to the
//! backend, so a transfer can never lead back into the anteroom. A missing, forged,
//! expired or foreign ticket is not an error: the player is admitted like any join.

use std::net::IpAddr;
use std::time::SystemTime;

use tokio::io::AsyncWriteExt;
use tokio::time::timeout_at;
use tracing::debug;

use super::preroute::Preroute;
use crate::ticket::{self, COOKIE_KEY, MAX_TICKET_LEN};
use crate::wire::{log_safe, PacketReader, PacketWriter};

/// Login state, stable across 766–776 (minecraft-data `protocol.json`, `login`).
const COOKIE_REQUEST: i32 = 0x05;
const COOKIE_RESPONSE: i32 = 0x04;
/// Key (an identifier) and framing around the ticket.
const RESPONSE_OVERHEAD: usize = 512;

/// `Ok(true)`: a valid ticket for `server`. `Ok(false)`: none or an invalid one.
/// `Err(())`: the client broke the protocol, went silent or left; drop it.
pub(super) async fn check(
    pre: &mut Preroute,
    key: &[u8],
    server: &str,
    ip: IpAddr,
) -> Result<bool, ()> {
    let request = PacketWriter::new(COOKIE_REQUEST)
        .string(COOKIE_KEY)
        .into_frame();
    // Still before routing: the exchange ends by the connection's pre-routing deadline.
    let write = timeout_at(pre.deadline(), pre.client.write_all(&request));
    if !matches!(write.await, Ok(Ok(()))) {
        return Err(());
    }
    pre.extend_budget(MAX_TICKET_LEN + RESPONSE_OVERHEAD);
    let body = pre
        .frame(MAX_TICKET_LEN + RESPONSE_OVERHEAD)
        .await
        .map_err(|e| debug!(error = %log_safe(e), "no cookie response"))?;
    let mut r = PacketReader::new(&body);
    let parsed = (|| {
        if r.varint()? != COOKIE_RESPONSE {
            return Ok(None);
        }
        let name = r.string(256)?;
        if name != COOKIE_KEY || !r.bool()? {
            return Ok(None);
        }
        r.byte_array(MAX_TICKET_LEN).map(Some)
    })();
    let presented = match parsed {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(false),
        Err::<_, crate::wire::WireError>(e) => {
            debug!(error = %log_safe(e), "malformed cookie response");
            return Err(());
        }
    };
    match ticket::verify(key, presented, ip, SystemTime::now()) {
        Ok(named) if named == server => Ok(true),
        Ok(named) => {
            debug!(ticket_for = %log_safe(&named), %server, "ticket for another server");
            Ok(false)
        }
        Err(e) => {
            debug!(error = %e, "ticket rejected");
            Ok(false)
        }
    }
}
