//! The transfer ticket: the signed cookie that lets a player back in after the anteroom.
//!
//! The anteroom stores a ticket in the client (Store Cookie, key [`COOKIE_KEY`]) right before
//! it sends Transfer. The client comes back with handshake intent 3 and the cookie; the proxy
//! (the edge) then checks that the ticket is ours, still fresh, bound to the same client address, and
//! names the server the player was waiting for. Cookies are client-controlled input, so the
//! ticket is HMAC-SHA256 signed and [`verify`] never panics on any byte string.
//!
//! Layout (all integers big-endian), at most [`MAX_TICKET_LEN`] bytes:
//!
//! ```text
//! version u8 (=1) | ip family u8 (4|6) | ip 4|16 bytes | expires u64 (unix seconds)
//! | nonce 8 bytes | server id length u16 | server id UTF-8 | HMAC-SHA256 of all of the above (32)
//! ```

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The cookie identifier under which the ticket is stored in the client.
pub const COOKIE_KEY: &str = "warden:ticket";

/// A ticket is a cookie's payload, so vanilla's cookie limit bounds it.
pub const MAX_TICKET_LEN: usize = crate::login::MAX_COOKIE_LEN;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 8;
const MAC_LEN: usize = 32;
/// Everything but the address and the server id.
const FIXED_LEN: usize = 1 + 1 + 8 + NONCE_LEN + 2 + MAC_LEN;
/// The longest server id that still fits a v6 ticket into [`MAX_TICKET_LEN`].
pub const MAX_SERVER_ID_LEN: usize = MAX_TICKET_LEN - FIXED_LEN - 16;

type HmacSha256 = Hmac<Sha256>;

/// Why a ticket was not accepted (or could not be made).
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum TicketError {
    #[error("ticket is malformed")]
    Malformed,
    #[error("ticket signature does not match")]
    BadSignature,
    #[error("ticket has expired")]
    Expired,
    #[error("ticket was issued to another address")]
    WrongIp,
    #[error("server id of {0} bytes is too long for a ticket")]
    ServerIdTooLong(usize),
}

/// Namespace for signing; tickets on the wire are plain byte vectors.
pub struct Ticket;

impl Ticket {
    /// Signs a ticket for `server`, usable from `ip` until `expires_at` (whole seconds).
    pub fn sign(
        key: &[u8],
        server: &str,
        ip: IpAddr,
        expires_at: SystemTime,
    ) -> Result<Vec<u8>, TicketError> {
        if server.len() > MAX_SERVER_ID_LEN {
            return Err(TicketError::ServerIdTooLong(server.len()));
        }
        let ip = ip.to_canonical();
        let expires = unix_seconds(expires_at);
        let mut out = Vec::with_capacity(FIXED_LEN + 16 + server.len());
        out.push(VERSION);
        match ip {
            IpAddr::V4(v4) => {
                out.push(4);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.push(6);
                out.extend_from_slice(&v6.octets());
            }
        }
        out.extend_from_slice(&expires.to_be_bytes());
        out.extend_from_slice(&nonce());
        // Checked above: MAX_SERVER_ID_LEN < u16::MAX.
        out.extend_from_slice(&(server.len() as u16).to_be_bytes());
        out.extend_from_slice(server.as_bytes());
        let mac = mac(key)?.chain_update(&out).finalize().into_bytes();
        out.extend_from_slice(&mac);
        Ok(out)
    }
}

/// Checks a ticket presented by a client at `ip` and returns the server id it names.
///
/// The signature is checked (in constant time) before anything the ticket claims is trusted.
pub fn verify(
    key: &[u8],
    bytes: &[u8],
    ip: IpAddr,
    now: SystemTime,
) -> Result<String, TicketError> {
    let parsed = parse(bytes)?;
    mac(key)
        .map_err(|_| TicketError::BadSignature)?
        .chain_update(parsed.signed)
        .verify_slice(parsed.mac)
        .map_err(|_| TicketError::BadSignature)?;
    if unix_seconds(now) >= parsed.expires {
        return Err(TicketError::Expired);
    }
    if parsed.ip != ip.to_canonical() {
        return Err(TicketError::WrongIp);
    }
    Ok(parsed.server.to_owned())
}

struct Parsed<'a> {
    signed: &'a [u8],
    mac: &'a [u8],
    ip: IpAddr,
    expires: u64,
    server: &'a str,
}

fn parse(bytes: &[u8]) -> Result<Parsed<'_>, TicketError> {
    if bytes.len() > MAX_TICKET_LEN || bytes.len() < FIXED_LEN + 4 {
        return Err(TicketError::Malformed);
    }
    let (signed, mac) = bytes.split_at(bytes.len() - MAC_LEN);
    let mut r = Reader(signed);
    if r.take(1)?[0] != VERSION {
        return Err(TicketError::Malformed);
    }
    let ip = match r.take(1)?[0] {
        4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(r.take(4)?);
            IpAddr::from(a)
        }
        6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(r.take(16)?);
            IpAddr::from(a)
        }
        _ => return Err(TicketError::Malformed),
    };
    let mut e = [0u8; 8];
    e.copy_from_slice(r.take(8)?);
    let expires = u64::from_be_bytes(e);
    r.take(NONCE_LEN)?;
    let len = r.take(2)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let server = std::str::from_utf8(r.take(len)?).map_err(|_| TicketError::Malformed)?;
    if !r.0.is_empty() {
        return Err(TicketError::Malformed);
    }
    Ok(Parsed {
        signed,
        mac,
        ip,
        expires,
        server,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TicketError> {
        if self.0.len() < n {
            return Err(TicketError::Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
}

fn mac(key: &[u8]) -> Result<HmacSha256, TicketError> {
    // HMAC takes keys of any length; the error exists only for the generic trait.
    <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| TicketError::Malformed)
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Makes tickets unique. It is not a secret (the HMAC is what protects the ticket), so if the
/// OS generator fails the nonce falls back to the clock and a process-wide counter.
fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    if getrandom::fill(&mut n).is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        n = (nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(48)).to_be_bytes();
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn ip() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn ticket() -> Vec<u8> {
        Ticket::sign(KEY, "survival", ip(), now() + Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn round_trip() {
        let t = ticket();
        assert!(t.len() <= MAX_TICKET_LEN);
        assert_eq!(t.len(), FIXED_LEN + 4 + "survival".len());
        assert_eq!(verify(KEY, &t, ip(), now()).unwrap(), "survival");
        assert_ne!(t, ticket(), "the nonce makes every ticket unique");
    }

    #[test]
    fn every_tampered_byte_is_rejected() {
        let t = ticket();
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 0x01;
            let got = verify(KEY, &bad, ip(), now());
            assert!(
                matches!(got, Err(TicketError::BadSignature | TicketError::Malformed)),
                "byte {i}: {got:?}"
            );
        }
        assert_eq!(
            verify(b"another key", &t, ip(), now()),
            Err(TicketError::BadSignature)
        );
    }

    #[test]
    fn expired() {
        let t = ticket();
        let later = now() + Duration::from_secs(60);
        assert_eq!(verify(KEY, &t, ip(), later), Err(TicketError::Expired));
        assert!(verify(KEY, &t, ip(), later - Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn other_ip() {
        let t = ticket();
        let other = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 8));
        assert_eq!(verify(KEY, &t, other, now()), Err(TicketError::WrongIp));
    }

    #[test]
    fn v4_mapped_v6_is_the_v4_address() {
        let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 7).to_ipv6_mapped());
        let t = Ticket::sign(KEY, "s", mapped, now() + Duration::from_secs(5)).unwrap();
        assert_eq!(verify(KEY, &t, ip(), now()).unwrap(), "s");
        let t = ticket();
        assert_eq!(verify(KEY, &t, mapped, now()).unwrap(), "survival");
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let t = Ticket::sign(KEY, "s", v6, now() + Duration::from_secs(5)).unwrap();
        assert_eq!(verify(KEY, &t, v6, now()).unwrap(), "s");
        assert_eq!(verify(KEY, &t, ip(), now()), Err(TicketError::WrongIp));
    }

    #[test]
    fn size_limit() {
        let long = "x".repeat(MAX_SERVER_ID_LEN);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let t = Ticket::sign(KEY, &long, v6, now() + Duration::from_secs(5)).unwrap();
        assert_eq!(t.len(), MAX_TICKET_LEN);
        assert_eq!(verify(KEY, &t, v6, now()).unwrap(), long);
        let too_long = "x".repeat(MAX_SERVER_ID_LEN + 1);
        assert!(matches!(
            Ticket::sign(KEY, &too_long, v6, now()),
            Err(TicketError::ServerIdTooLong(_))
        ));
    }

    #[test]
    fn truncated_and_garbage_never_panic() {
        let t = ticket();
        for n in 0..t.len() {
            assert!(verify(KEY, &t[..n], ip(), now()).is_err(), "prefix {n}");
        }
        let mut long = t.clone();
        long.push(0);
        assert!(verify(KEY, &long, ip(), now()).is_err());
        // A deterministic xorshift stream of random lengths and bytes.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 6000) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len > 2 && next() % 2 == 0 {
                // Make the structure plausible so parsing gets further in.
                bytes[0] = VERSION;
                bytes[1] = if next() % 2 == 0 { 4 } else { 6 };
            }
            assert!(verify(KEY, &bytes, ip(), now()).is_err());
        }
    }
}
