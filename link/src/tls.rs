//! The fleet's certificates as rustls and quinn configs: TLS 1.3 only, ALPN
//! [`crate::ALPN`], the peer's certificate checked against the fleet CA and its revocation
//! list on both sides, no 0-RTT (a warm link does not need it, and 0-RTT data replays).
//! The QUIC transport is tuned for one connection carrying many players: keep-alives
//! under the idle timeout, and bounded flow-control windows so a link's buffers stay
//! within [`LINK_RECEIVE_WINDOW`] however many players it carries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::{LinkError, ALPN};

/// A link closes after this long without a packet (keep-alives prevent it while both
/// ends live).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Well under the idle timeout, and short enough that a dead path is noticed quickly.
pub const KEEP_ALIVE: Duration = Duration::from_secs(4);
/// One player's stream buffers at most this much unread data: enough for one stream to
/// move ~200 MiB/s across a 40 ms round trip (a world download), while the link's total
/// stays bounded by [`LINK_RECEIVE_WINDOW`].
pub const STREAM_RECEIVE_WINDOW: u32 = 8 * 1024 * 1024;
/// All streams of one link together buffer at most this much: the memory bound per link,
/// whatever the number of players (10k players share it; each still moves ~10 KB/s).
pub const LINK_RECEIVE_WINDOW: u32 = 64 * 1024 * 1024;
/// Players one edge may have on one node at once.
pub const MAX_STREAMS: u32 = 20_000;

/// Where an appliance's link material is.
#[derive(Debug, Clone)]
pub struct Material {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA's revocation list; None: nothing revoked.
    pub crl: Option<PathBuf>,
}

/// The configs of one appliance: a node listens with `server`, an edge dials with `client`.
#[derive(Clone)]
pub struct Tls {
    pub server: quinn::ServerConfig,
    pub client: quinn::ClientConfig,
}

fn tls(what: impl std::fmt::Display) -> LinkError {
    LinkError::Tls(what.to_string())
}

fn read(path: &Path) -> Result<Vec<u8>, LinkError> {
    std::fs::read(path).map_err(|e| LinkError::io(format!("reading {}", path.display()), e))
}

impl Tls {
    pub fn load(m: &Material) -> Result<Tls, LinkError> {
        let ca = read(&m.ca)?;
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            let c = c.map_err(|e| tls(format!("{}: {e}", m.ca.display())))?;
            roots
                .add(c)
                .map_err(|e| tls(format!("{}: {e}", m.ca.display())))?;
        }
        if roots.is_empty() {
            return Err(tls(format!("{} holds no certificate", m.ca.display())));
        }
        let roots = Arc::new(roots);
        let cert = read(&m.cert)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<_, _>>()
            .map_err(|e| tls(format!("{}: {e}", m.cert.display())))?;
        if chain.is_empty() {
            return Err(tls(format!("{} holds no certificate", m.cert.display())));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(&m.key)?)
            .map_err(|e| tls(format!("{}: {e}", m.key.display())))?;
        let crls: Vec<CertificateRevocationListDer<'static>> = match &m.crl {
            Some(p) => CertificateRevocationListDer::pem_slice_iter(&read(p)?)
                .collect::<Result<_, _>>()
                .map_err(|e| tls(format!("{}: {e}", p.display())))?,
            None => Vec::new(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .with_crls(crls.clone())
            .build()
            .map_err(tls)?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| tls(format!("{} / {}: {e}", m.cert.display(), m.key.display())))?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        server.max_early_data_size = 0;

        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .with_crls(crls)
                .build()
                .map_err(tls)?;
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls)?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls(format!("{} / {}: {e}", m.cert.display(), m.key.display())))?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        client.enable_early_data = false;

        let transport = Arc::new(transport()?);
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(server).map_err(tls)?,
        ));
        server.transport_config(transport.clone());
        let mut client =
            quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(client).map_err(tls)?));
        client.transport_config(transport);
        Ok(Tls { server, client })
    }
}

fn transport() -> Result<TransportConfig, LinkError> {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(IdleTimeout::try_from(IDLE_TIMEOUT).map_err(tls)?))
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(LINK_RECEIVE_WINDOW))
        .send_window(u64::from(LINK_RECEIVE_WINDOW));
    Ok(t)
}
