//! Turning the handshake's address field into a routing key.
//!
//! Clients and the things in front of them decorate the address: Forge appends
//! `\0FML\0`/`\0FML2\0`/`\0FML3\0`, TCPShield-style RealIP appends `///ip:port///…`, and
//! SRV-resolved names keep their trailing dot. All of that is stripped, and the rest is
//! lower-cased, so `Survival.Play.Example.com.\0FML2\0` routes like `survival.play.example.com`.

use thiserror::Error;

/// The routing key is a DNS name: at most 255 characters.
pub const MAX_HOST_CHARS: usize = 255;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HostError {
    #[error("empty host")]
    Empty,
    #[error("host longer than {MAX_HOST_CHARS} characters")]
    TooLong,
}

/// Normalizes a handshake address into a routing key.
pub fn normalize_host(address: &str) -> Result<String, HostError> {
    let mut host = address;
    if let Some(i) = host.find('\0') {
        host = &host[..i];
    }
    if let Some(i) = host.find("///") {
        host = &host[..i];
    }
    let host = host.trim().trim_end_matches('.');
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    // Check the key itself: lower-casing can lengthen a string ('İ' becomes "i̇").
    let key = host.to_lowercase();
    if key.chars().count() > MAX_HOST_CHARS {
        return Err(HostError::TooLong);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_decorations() {
        let cases = [
            ("survival.play.example.com", "survival.play.example.com"),
            ("Survival.Play.Example.COM.", "survival.play.example.com"),
            ("mc.example.org\0FML\0", "mc.example.org"),
            ("mc.example.org\0FML2\0", "mc.example.org"),
            ("mc.example.org.\0FML3\0", "mc.example.org"),
            (
                "mc.example.org///203.0.113.9:51234///1700000000///sig",
                "mc.example.org",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_host(input).unwrap(), want, "{input:?}");
        }
    }

    #[test]
    fn rejects_empty_and_long() {
        assert_eq!(normalize_host("."), Err(HostError::Empty));
        assert_eq!(normalize_host("\0FML\0"), Err(HostError::Empty));
        assert_eq!(normalize_host(&"a".repeat(256)), Err(HostError::TooLong));
        assert!(normalize_host(&"a".repeat(255)).is_ok());
    }

    /// Found by fuzz/handshake_host: 200 × 'İ' passed the length check and lower-cased to a
    /// 400-character key.
    #[test]
    fn length_is_checked_after_lowercasing() {
        assert_eq!(
            normalize_host(&"\u{130}".repeat(200)),
            Err(HostError::TooLong)
        );
        let key = normalize_host(&"\u{130}".repeat(127)).unwrap();
        assert_eq!(key.chars().count(), 254);
    }
}
