//! PROXY protocol (HAProxy v1 and v2): learn the player's real address from a trusted
//! load balancer in front of Warden, and tell backends the real address behind Warden.
//!
//! The edge parses inside each connection's task under the pre-routing deadline — never in
//! the accept loop, where one slow peer would stall every accept (Infrarust's design). A
//! header is honoured only from configured trusted networks; from anyone else it is
//! refused, because otherwise any client could claim any address (Gate #936).

use std::net::SocketAddr;

use ppp::v2;

/// The v2 signature; a v1 header starts with `PROXY `.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// v1 lines are at most 107 bytes; v2 headers here carry addresses and a few TLVs.
pub const MAX_HEADER_BYTES: usize = 536;

/// What the first bytes of a connection say about a PROXY header.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// No header: the bytes are the client's own.
    Absent,
    /// A header may be arriving: read more.
    Incomplete,
    /// A header of `len` bytes; `source` is the client (None for LOCAL/UNKNOWN, e.g. health checks).
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
    Invalid(String),
}

/// Parses a PROXY header at the start of `buf`, if there is one.
pub fn parse(buf: &[u8]) -> Parsed {
    let probe = buf.len().min(V2_SIGNATURE.len());
    let v2_like = buf[..probe] == V2_SIGNATURE[..probe];
    let probe1 = buf.len().min(V1_PREFIX.len());
    let v1_like = buf[..probe1] == V1_PREFIX[..probe1];
    if buf.is_empty() || (!v2_like && !v1_like) {
        return if buf.is_empty() {
            Parsed::Incomplete
        } else {
            Parsed::Absent
        };
    }
    if buf.len() < V2_SIGNATURE.len().max(V1_PREFIX.len())
        && !(v1_like && buf.len() >= V1_PREFIX.len())
    {
        return Parsed::Incomplete;
    }
    if v2_like {
        match v2::Header::try_from(buf) {
            Ok(h) => Parsed::Header {
                len: h.len(),
                source: match h.addresses {
                    v2::Addresses::IPv4(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    v2::Addresses::IPv6(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    _ => None,
                },
            },
            Err(v2::ParseError::Incomplete(_)) | Err(v2::ParseError::Partial(_, _)) => {
                if buf.len() >= MAX_HEADER_BYTES {
                    Parsed::Invalid("PROXY v2 header too long".into())
                } else {
                    Parsed::Incomplete
                }
            }
            Err(e) => Parsed::Invalid(format!("PROXY v2: {e}")),
        }
    } else {
        let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
            return if buf.len() >= 107 {
                Parsed::Invalid("PROXY v1 line too long".into())
            } else {
                Parsed::Incomplete
            };
        };
        let line = &buf[..end + 2];
        match ppp::v1::Header::try_from(line) {
            Ok(h) => Parsed::Header {
                len: line.len(),
                source: match h.addresses {
                    ppp::v1::Addresses::Tcp4(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    ppp::v1::Addresses::Tcp6(a) => {
                        Some(SocketAddr::from((a.source_address, a.source_port)))
                    }
                    ppp::v1::Addresses::Unknown => None,
                },
            },
            Err(e) => Parsed::Invalid(format!("PROXY v1: {e}")),
        }
    }
}

/// True when `buf` begins with a whole PROXY signature (v1 `PROXY ` or the v2 magic).
/// Shorter prefixes say nothing: a Minecraft frame of length 13 also starts with `\r`.
pub fn starts_with_header(buf: &[u8]) -> bool {
    buf.starts_with(V1_PREFIX) || buf.starts_with(V2_SIGNATURE)
}

/// Encodes a v2 PROXY header announcing `client` connecting to `local`.
pub fn encode_v2(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    // Both ends must be the same family; map v4 into v6 when they differ.
    let (src, dst) = match (client, local) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
            (client, local)
        }
        (SocketAddr::V4(c), SocketAddr::V6(_)) => {
            (SocketAddr::from((c.ip().to_ipv6_mapped(), c.port())), local)
        }
        (SocketAddr::V6(_), SocketAddr::V4(l)) => (
            client,
            SocketAddr::from((l.ip().to_ipv6_mapped(), l.port())),
        ),
    };
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (src, dst),
    )
    .build()
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_roundtrip() {
        let c: SocketAddr = "203.0.113.9:51234".parse().unwrap();
        let l: SocketAddr = "10.0.0.1:25565".parse().unwrap();
        let mut h = encode_v2(c, l);
        let n = h.len();
        h.extend_from_slice(&[0x10, 0x00]);
        assert_eq!(
            parse(&h),
            Parsed::Header {
                len: n,
                source: Some(c)
            }
        );
        for cut in 1..n {
            assert_eq!(parse(&h[..cut]), Parsed::Incomplete, "v2 cut at {cut}");
        }
        let line = b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 25565\r\n\x10\x00";
        assert_eq!(
            parse(line),
            Parsed::Header {
                len: line.len() - 2,
                source: Some(c)
            }
        );
        assert_eq!(parse(&line[..20]), Parsed::Incomplete);
        assert!(matches!(
            parse(b"PROXY TCP9 nonsense\r\n"),
            Parsed::Invalid(_)
        ));
    }

    #[test]
    fn minecraft_bytes_are_not_a_header() {
        assert_eq!(parse(&[0x10, 0x00, 0xf8, 0x05]), Parsed::Absent);
        // A 13-byte handshake starts with '\r', like the v2 signature.
        assert!(!starts_with_header(&[0x0D]));
        assert!(!starts_with_header(&[0x0D, 0x00, 0xfd, 0x05]));
        assert!(starts_with_header(b"PROXY TCP4"));
        assert_eq!(parse(&[0xFE, 0x01]), Parsed::Absent);
    }

    #[test]
    fn mixed_families() {
        let c: SocketAddr = "203.0.113.9:1".parse().unwrap();
        let l: SocketAddr = "[::1]:25565".parse().unwrap();
        let h = encode_v2(c, l);
        assert!(matches!(
            parse(&h),
            Parsed::Header {
                source: Some(_),
                ..
            }
        ));
    }
}
