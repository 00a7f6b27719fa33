//! HTTPS for an API reachable from the network: rustls with the ring provider (the TLS
//! stack the rest of Warden already uses), certificate and key from PEM files.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_rustls::rustls::{self, pki_types::CertificateDer};
use tokio_rustls::TlsAcceptor;

pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("api.tls_cert {}", cert.display()))?,
    ))
    .collect::<Result<_, _>>()
    .with_context(|| format!("api.tls_cert {}: not PEM certificates", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("api.tls_cert {}: no certificate in it", cert.display());
    }
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("api.tls_key {}", key.display()))?,
    ))
    .with_context(|| format!("api.tls_key {}: not a PEM key", key.display()))?
    .with_context(|| format!("api.tls_key {}: no private key in it", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("api.tls_cert and api.tls_key do not form a usable pair")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
