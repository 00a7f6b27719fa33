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
use crate::wire::login::{CookieRequest, CookieResponse};
use crate::wire::ticket::{self, COOKIE_KEY, MAX_TICKET_LEN};
use crate::wire::{log_safe, Decode, Encode, Packet, PacketReader};

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
    let request = CookieRequest { key: COOKIE_KEY }.frame();
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
    // Any other packet, or a cookie under another key, is no ticket; bytes after the
    // cookie are ignored.
    let parsed = (|| {
        let mut r = PacketReader::new(&body);
        if r.varint()? != CookieResponse::ID {
            return Ok(None);
        }
        let response = CookieResponse::read_fields(&mut r)?;
        Ok(response.payload.filter(|_| response.key == COOKIE_KEY))
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
