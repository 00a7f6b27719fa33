//! Transfer ticket verification: the cookie a returning player presents is client input.
//!
//! Input layout: a mode byte. Even: the rest is a presented ticket, checked at an address and
//! time taken from its first bytes. Odd: 38 bytes of fields (address flags, address, expiry,
//! check time, a byte to flip and how, bytes to cut), then a server id; a real ticket is
//! signed from them, perhaps damaged, and checked. Properties:
//! - `verify` never panics, on any bytes;
//! - no bytes the fuzzer makes up pass without the key (it cannot forge an HMAC);
//! - a signed ticket fits `MAX_TICKET_LEN`, or signing refuses a server id that is too long;
//! - an intact ticket gives exactly the verdict its fields call for (expired, other address,
//!   or the server id), and a v4 address matches its v4-mapped v6 form;
//! - a ticket with any byte flipped, cut short or extended is refused as forged or malformed.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use warden_wire::ticket::{verify, Ticket, TicketError, MAX_SERVER_ID_LEN, MAX_TICKET_LEN};

const KEY: &[u8] = b"fuzz-ticket-key-0123456789abcdef";

fn at(secs: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(secs))
}

fn ip(v6: bool, b: &[u8]) -> IpAddr {
    if v6 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[..16]);
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    }
}

fn presented(data: &[u8]) {
    let (ip, now) = match data {
        [a, b, c, d, t0, t1, t2, t3, ..] => (
            IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)),
            at(u32::from_be_bytes([*t0, *t1, *t2, *t3])),
        ),
        _ => (IpAddr::V4(Ipv4Addr::LOCALHOST), at(0)),
    };
    let got = verify(KEY, data, ip, now);
    assert!(got.is_err(), "made-up bytes passed: {got:?}");
}

fn signed(data: &[u8]) {
    let Some((f, server)) = data.split_at_checked(38) else {
        return;
    };
    let flags = f[0];
    let issued_to = ip(flags & 1 != 0, &f[1..17]);
    let expires = u32::from_be_bytes([f[17], f[18], f[19], f[20]]);
    let now = u32::from_be_bytes([f[21], f[22], f[23], f[24]]);
    let flip_at = usize::from(u16::from_be_bytes([f[25], f[26]]));
    let flip = f[27];
    let cut = usize::from(f[28]);
    let other = ip(flags & 1 != 0, &f[29..38].repeat(2));
    let server = String::from_utf8_lossy(server);

    let ticket = match Ticket::sign(KEY, &server, issued_to, at(expires)) {
        Ok(t) => t,
        Err(e) => {
            assert_eq!(e, TicketError::ServerIdTooLong(server.len()));
            assert!(server.len() > MAX_SERVER_ID_LEN);
            return;
        }
    };
    assert!(ticket.len() <= MAX_TICKET_LEN);

    // Checked from where: the same address, its other form, or somewhere else.
    let from = match (flags >> 1) & 3 {
        0 | 1 => issued_to,
        2 => match issued_to {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(issued_to, IpAddr::V4),
        },
        _ => other,
    };
    let want = if now >= expires {
        Err(TicketError::Expired)
    } else if from.to_canonical() != issued_to.to_canonical() {
        Err(TicketError::WrongIp)
    } else {
        Ok(server.to_string())
    };
    assert_eq!(verify(KEY, &ticket, from, at(now)), want);

    let mut damaged = ticket.clone();
    match (flags >> 3) & 3 {
        0 if flip != 0 => damaged[flip_at % ticket.len()] ^= flip,
        1 if cut != 0 => damaged.truncate(ticket.len().saturating_sub(cut)),
        2 => damaged.push(flip),
        _ => return,
    }
    let got = verify(KEY, &damaged, from, at(now));
    assert!(
        matches!(got, Err(TicketError::BadSignature | TicketError::Malformed)),
        "damaged ticket: {got:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode & 1 == 1 => signed(rest),
        Some((_, rest)) => presented(rest),
        None => {}
    }
});
