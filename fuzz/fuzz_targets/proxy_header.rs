//! PROXY protocol (v1 and v2) header parsing on arbitrary bytes, and the v2 encoder.
//!
//! The edge calls `parse` on what a trusted load balancer has sent so far, again after each
//! read, and gives up once `MAX_HEADER_BYTES` are buffered without a verdict. Properties:
//! - `parse` never panics;
//! - `Incomplete` never lasts to `MAX_HEADER_BYTES`, so the edge's read loop always ends;
//! - a header's length is positive and within the bytes read; what follows it does not
//!   change the verdict (every longer prefix parses to the same header), nor does anything
//!   after bytes already found `Absent`;
//! - bytes that start with a whole signature (`starts_with_header`) are never `Absent`;
//! - `encode_v2` of two addresses built from the first 37 input bytes parses back, whole,
//!   to the client's address (v4 mapped into v6 when the families differ).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use warden_wire::proxy_protocol::{encode_v2, parse, starts_with_header, Parsed, MAX_HEADER_BYTES};

/// Prefix lengths worth checking: all short ones, then every 17th, and around `at`.
fn cuts(len: usize, at: usize) -> impl Iterator<Item = usize> {
    let short = 0..=len.min(48);
    let sparse = (48..=len).step_by(17);
    let around = at.saturating_sub(2)..=(at + 2).min(len);
    short.chain(sparse).chain(around)
}

fn addr(b: &[u8], v6: bool) -> SocketAddr {
    let ip = if v6 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[..16]);
        IpAddr::V6(Ipv6Addr::from(a))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    SocketAddr::new(ip, u16::from_be_bytes([b[16], b[17]]))
}

fn check_parse(data: &[u8]) {
    let whole = parse(data);
    if data.len() >= MAX_HEADER_BYTES {
        assert_ne!(
            whole,
            Parsed::Incomplete,
            "undecided after {} bytes",
            data.len()
        );
    }
    if starts_with_header(data) {
        assert_ne!(whole, Parsed::Absent);
    }
    let end = match &whole {
        Parsed::Header { len, .. } => {
            assert!(
                *len > 0 && *len <= data.len(),
                "header of {len} in {}",
                data.len()
            );
            *len
        }
        _ => 0,
    };
    for cut in cuts(data.len(), end) {
        let got = parse(&data[..cut]);
        match &got {
            Parsed::Header { .. } => assert_eq!(got, whole, "header at {cut} changed"),
            Parsed::Absent => assert_eq!(whole, Parsed::Absent, "absent at {cut} changed"),
            Parsed::Incomplete | Parsed::Invalid(_) => {}
        }
    }
}

fn check_encode(data: &[u8]) {
    let Some(b) = data.get(..37) else { return };
    let client = addr(&b[1..19], b[0] & 1 != 0);
    let local = addr(&b[19..37], b[0] & 2 != 0);
    let mut header = encode_v2(client, local);
    let n = header.len();
    assert!(n > 0 && n <= MAX_HEADER_BYTES);
    header.extend_from_slice(&data[37..]);
    match parse(&header) {
        Parsed::Header {
            len,
            source: Some(source),
        } => {
            assert_eq!(len, n);
            assert_eq!(source.ip().to_canonical(), client.ip().to_canonical());
            assert_eq!(source.port(), client.port());
        }
        other => panic!("encode_v2({client}, {local}) parsed as {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    check_parse(data);
    check_encode(data);
});
