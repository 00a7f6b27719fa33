//! Pre-1.7 server-list pings (the `0xFE` family), detected and answered in legacy format.
//!
//! Beta 1.8–1.3 sends `FE`; 1.4–1.5 send `FE 01`; 1.6 sends `FE 01 FA` followed by an
//! `MC|PingHost` plugin message that carries the host. A modern frame of length 254 also
//! starts `FE 01`, but its next byte is packet id `00`, never `FA` — that is how the two are
//! told apart. Modern clients fall back to the legacy ping when a server closes early, so
//! answering it matters even today.

use super::WireError;

/// Which legacy ping the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyPing {
    /// Beta 1.8 – 1.3: bare `FE`.
    Beta,
    /// 1.4 – 1.5: `FE 01`.
    V1_4,
    /// 1.6: `FE 01 FA MC|PingHost …` with the address the player typed.
    V1_6 {
        protocol: u8,
        host: String,
        port: u32,
    },
}

/// The outcome of looking at the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// A modern, length-prefixed connection.
    Modern,
    /// Could be legacy; wait for more bytes (or for the short legacy grace to pass).
    NeedMore,
    Legacy(LegacyPing),
}

const PING_HOST: &str = "MC|PingHost";
/// Largest `MC|PingHost` payload accepted (protocol byte + host + port is far smaller).
const MAX_PING_HOST_DATA: usize = 7 + 2 * 255;

/// Classifies the first bytes. `more_may_come` is false once the reader has waited long
/// enough that a partial legacy ping must be taken as complete (beta and 1.4 clients send
/// nothing after `FE` / `FE 01`).
pub fn detect(buf: &[u8], more_may_come: bool) -> Result<Detection, WireError> {
    match buf {
        [] => Ok(Detection::NeedMore),
        [first, ..] if *first != 0xFE => Ok(Detection::Modern),
        [_] => Ok(if more_may_come {
            Detection::NeedMore
        } else {
            Detection::Legacy(LegacyPing::Beta)
        }),
        [_, second, ..] if *second != 0x01 => Ok(Detection::Modern),
        [_, _] => Ok(if more_may_come {
            Detection::NeedMore
        } else {
            Detection::Legacy(LegacyPing::V1_4)
        }),
        [_, _, 0xFA, rest @ ..] => match parse_ping_host(rest)? {
            // Pre-1.7 servers answer `FE 01` whatever follows; so does Warden once the
            // client has stopped sending (mcstatus sends `FE 01 FA` and nothing else).
            Detection::NeedMore if !more_may_come => Ok(Detection::Legacy(LegacyPing::V1_4)),
            other => Ok(other),
        },
        // `FE 01 00 …`: a modern frame of length 254 whose packet id is 0.
        _ => Ok(Detection::Modern),
    }
}

fn parse_ping_host(rest: &[u8]) -> Result<Detection, WireError> {
    let mut r = Cursor { buf: rest };
    let Some(chan_len) = r.u16() else {
        return Ok(Detection::NeedMore);
    };
    if chan_len as usize != PING_HOST.len() {
        return Err(WireError::UnexpectedPacket {
            got: 0xFA,
            expected: 0xFA,
        });
    }
    let Some(chan) = r.utf16(chan_len as usize) else {
        return Ok(Detection::NeedMore);
    };
    if chan != PING_HOST {
        return Err(WireError::UnexpectedPacket {
            got: 0xFA,
            expected: 0xFA,
        });
    }
    let Some(data_len) = r.u16() else {
        return Ok(Detection::NeedMore);
    };
    let data_len = data_len as usize;
    if !(7..=MAX_PING_HOST_DATA).contains(&data_len) {
        return Err(WireError::FrameTooLarge {
            len: data_len,
            max: MAX_PING_HOST_DATA,
        });
    }
    if r.buf.len() < data_len {
        return Ok(Detection::NeedMore);
    }
    let mut d = Cursor {
        buf: &r.buf[..data_len],
    };
    let protocol = d.u8().ok_or(WireError::Truncated)?;
    let host_len = d.u16().ok_or(WireError::Truncated)? as usize;
    if host_len > 255 {
        return Err(WireError::StringTooLong {
            len: host_len,
            max: 255,
        });
    }
    let host = d.utf16(host_len).ok_or(WireError::Truncated)?;
    let port = d.u32().ok_or(WireError::Truncated)?;
    Ok(Detection::Legacy(LegacyPing::V1_6 {
        protocol,
        host,
        port,
    }))
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (h, t) = self.buf.split_at(n);
        self.buf = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn utf16(&mut self, chars: usize) -> Option<String> {
        let raw = self.take(chars * 2)?;
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        Some(String::from_utf16_lossy(&units))
    }
}

/// What a legacy reply shows in the server list.
#[derive(Debug, Clone)]
pub struct LegacyStatus<'a> {
    pub protocol: i32,
    pub version: &'a str,
    pub motd: &'a str,
    pub online: i64,
    pub max: i64,
}

/// Builds the `0xFF` kick packet that carries a legacy status reply.
pub fn response(ping: &LegacyPing, status: &LegacyStatus<'_>) -> Vec<u8> {
    let text = match ping {
        // Beta clients split on '§', so the MOTD must not contain it.
        LegacyPing::Beta => format!(
            "{}§{}§{}",
            status.motd.replace('§', ""),
            status.online,
            status.max
        ),
        LegacyPing::V1_4 | LegacyPing::V1_6 { .. } => format!(
            "§1\0{}\0{}\0{}\0{}\0{}",
            status.protocol, status.version, status.motd, status.online, status.max
        ),
    };
    let units: Vec<u16> = text.encode_utf16().take(u16::MAX as usize).collect();
    let mut out = Vec::with_capacity(3 + units.len() * 2);
    out.push(0xFF);
    out.extend_from_slice(&(units.len() as u16).to_be_bytes());
    for u in units {
        out.extend_from_slice(&u.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping_1_6(host: &str, port: u32) -> Vec<u8> {
        let mut v = vec![0xFE, 0x01, 0xFA];
        v.extend((PING_HOST.len() as u16).to_be_bytes());
        for u in PING_HOST.encode_utf16() {
            v.extend(u.to_be_bytes());
        }
        let host16: Vec<u16> = host.encode_utf16().collect();
        v.extend(((7 + host16.len() * 2) as u16).to_be_bytes());
        v.push(74);
        v.extend((host16.len() as u16).to_be_bytes());
        for u in host16 {
            v.extend(u.to_be_bytes());
        }
        v.extend(port.to_be_bytes());
        v
    }

    #[test]
    fn detects_each_kind() {
        assert_eq!(detect(&[0x10, 0x00], true), Ok(Detection::Modern));
        assert_eq!(detect(&[0xFE], true), Ok(Detection::NeedMore));
        assert_eq!(
            detect(&[0xFE], false),
            Ok(Detection::Legacy(LegacyPing::Beta))
        );
        assert_eq!(
            detect(&[0xFE, 0x01], false),
            Ok(Detection::Legacy(LegacyPing::V1_4))
        );
        assert_eq!(
            detect(&[0xFE, 0x01, 0x00, 0x01], true),
            Ok(Detection::Modern)
        );
        let p = ping_1_6("mc.example.com", 25565);
        assert_eq!(
            detect(&p, true),
            Ok(Detection::Legacy(LegacyPing::V1_6 {
                protocol: 74,
                host: "mc.example.com".into(),
                port: 25565
            }))
        );
        for cut in 3..p.len() {
            assert_eq!(
                detect(&p[..cut], true),
                Ok(Detection::NeedMore),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn response_format() {
        let s = LegacyStatus {
            protocol: 127,
            version: "1.21",
            motd: "Hi",
            online: 3,
            max: 20,
        };
        let r = response(&LegacyPing::V1_4, &s);
        assert_eq!(r[0], 0xFF);
        let len = u16::from_be_bytes([r[1], r[2]]) as usize;
        assert_eq!(r.len(), 3 + 2 * len);
        let units: Vec<u16> = r[3..]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(
            String::from_utf16(&units).unwrap(),
            "§1\u{0}127\u{0}1.21\u{0}Hi\u{0}3\u{0}20"
        );
        let b = response(&LegacyPing::Beta, &LegacyStatus { motd: "§aHi", ..s });
        let units: Vec<u16> = b[3..]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16(&units).unwrap(), "aHi§3§20");
    }
}
