//! HTTPS for an API reachable from the network: rustls with the ring provider (the TLS
//! stack the rest of Warden already uses), certificate and key from PEM files.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::{self, pki_types::CertificateDer};
use tokio_rustls::TlsAcceptor;

/// Why the API's certificate or key cannot be used; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let fail = |what: String| move |e: &dyn std::fmt::Display| TlsError(format!("{what}: {e}"));
    let cert_name = format!("api.tls_cert {}", cert.display());
    let key_name = format!("api.tls_key {}", key.display());
    let file = std::fs::File::open(cert).map_err(|e| fail(cert_name.clone())(&e))?;
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut std::io::BufReader::new(file))
            .collect::<Result<_, _>>()
            .map_err(|e| fail(format!("{cert_name}: not PEM certificates"))(&e))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{cert_name}: no certificate in it")));
    }
    let file = std::fs::File::open(key).map_err(|e| fail(key_name.clone())(&e))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(file))
        .map_err(|e| fail(format!("{key_name}: not a PEM key"))(&e))?
        .ok_or_else(|| TlsError(format!("{key_name}: no private key in it")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("TLS protocol versions".into())(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| fail("api.tls_cert and api.tls_key do not form a usable pair".into())(&e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
