//! What the links do, per node: round-trip time, open streams, bytes each way, reconnects,
//! fallbacks to TCP, refused handshakes by reason, and requests on the control streams. Labels are node ids and fixed
//! words, never player data.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct LinkMetrics {
    pub rtt: GaugeVec,
    pub up: IntGaugeVec,
    pub streams: IntGaugeVec,
    pub bytes: IntCounterVec,
    pub reconnects: IntCounterVec,
    pub fallbacks: IntCounterVec,
    pub handshake_failures: IntCounterVec,
    pub requests: IntCounterVec,
}

impl LinkMetrics {
    /// The metrics, not yet in any registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(Self {
            rtt: GaugeVec::new(
                Opts::new("warden_link_rtt_seconds", "Round-trip time of the link to a node, as QUIC measures it"),
                &["node"],
            )?,
            up: IntGaugeVec::new(
                Opts::new("warden_link_up", "1 while the link to a node is connected"),
                &["node"],
            )?,
            streams: IntGaugeVec::new(
                Opts::new("warden_link_streams", "Players carried over the link to or from a node right now"),
                &["node"],
            )?,
            bytes: IntCounterVec::new(
                Opts::new("warden_link_bytes_total", "Bytes carried over links, by node and direction (to_node, from_node)"),
                &["node", "direction"],
            )?,
            reconnects: IntCounterVec::new(
                Opts::new("warden_link_reconnects_total", "Connections made to a node after the first (the link dropped)"),
                &["node"],
            )?,
            fallbacks: IntCounterVec::new(
                Opts::new("warden_link_fallbacks_total", "Players sent to a node over plain TCP because its link could not be used"),
                &["node"],
            )?,
            handshake_failures: IntCounterVec::new(
                Opts::new("warden_link_handshake_failures_total", "Link handshakes refused or failed, by reason (unknown_ca, expired, revoked, no_certificate, bad_name, alpn, timeout, other)"),
                &["reason"],
            )?,
            requests: IntCounterVec::new(
                Opts::new("warden_link_requests_total", "Requests an edge sent a node on the link's control stream, by kind (wake, sleep) and result (taken, refused, failed: the edge fell back to the store)"),
                &["node", "kind", "result"],
            )?,
        })
    }

    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.rtt.clone()))?;
        registry.register(Box::new(self.up.clone()))?;
        registry.register(Box::new(self.streams.clone()))?;
        registry.register(Box::new(self.bytes.clone()))?;
        registry.register(Box::new(self.reconnects.clone()))?;
        registry.register(Box::new(self.fallbacks.clone()))?;
        registry.register(Box::new(self.handshake_failures.clone()))?;
        registry.register(Box::new(self.requests.clone()))?;
        Ok(())
    }

    pub(crate) fn failed(&self, reason: &'static str) {
        self.handshake_failures.with_label_values(&[reason]).inc();
    }
}

/// A handshake error's reason, from the words rustls uses for its own verdicts and the TLS
/// alert numbers quinn reports for the peer's (RFC 8446: 48 unknown_ca, 45
/// certificate_expired, 44 certificate_revoked, 116 certificate_required, 120
/// no_application_protocol).
pub fn classify(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    let alert = |n: &str| e.contains(&format!("error {n}:")) || e.ends_with(&format!("error {n}"));
    if alert("48")
        || e.contains("unknownissuer")
        || e.contains("unknown ca")
        || e.contains("unknown_ca")
    {
        "unknown_ca"
    } else if alert("45") || e.contains("expired") {
        "expired"
    } else if alert("44") || e.contains("revoked") {
        "revoked"
    } else if alert("116")
        || e.contains("no certificates")
        || e.contains("nocertificatespresented")
        || e.contains("certificate required")
        || e.contains("certificaterequired")
    {
        "no_certificate"
    } else if e.contains("notvalidforname") || e.contains("not valid for name") {
        "bad_name"
    } else if alert("120")
        || e.contains("application protocol")
        || e.contains("applicationprotocol")
        || e.contains("alpn")
    {
        "alpn"
    } else if e.contains("timed out") || e.contains("timeout") {
        "timeout"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn handshake_errors_have_reasons() {
        assert_eq!(
            classify("invalid peer certificate: UnknownIssuer"),
            "unknown_ca"
        );
        assert_eq!(classify("invalid peer certificate: Expired"), "expired");
        assert_eq!(classify("invalid peer certificate: Revoked"), "revoked");
        assert_eq!(classify("peer sent no certificates"), "no_certificate");
        assert_eq!(
            classify("the cryptographic handshake failed: error 120: peer doesn't support any known protocol"),
            "alpn"
        );
        assert_eq!(
            classify("the cryptographic handshake failed: error 48"),
            "unknown_ca"
        );
        assert_eq!(
            classify("the cryptographic handshake failed: error 42"),
            "other"
        );
        assert_eq!(classify("timed out"), "timeout");
    }
}
