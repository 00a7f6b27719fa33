//! Reaching a Docker daemon, and turning its failures into [`RuntimeError`]s that say where.
//!
//! Two transports: the local socket (the appliance's own daemon) and TCP+TLS to a remote
//! daemon (`dockerd --tlsverify` on port 2376) with client-certificate auth, via rustls/ring
//! so no OpenSSL is needed. Every call is bounded here, because bollard's own timeout only
//! covers receiving response headers (see bollard #514).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::Docker;

use crate::RuntimeError;

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DockerEndpoint {
    /// `unix:///var/run/docker.sock`.
    #[default]
    LocalSocket,
    /// Another local socket, e.g. `/run/user/1000/docker.sock` (with or without `unix://`).
    Socket(String),
    /// A remote daemon over TLS with client certificates, e.g. `tcp://10.0.0.5:2376`.
    /// The CA pins the daemon's certificate; key and cert identify Warden to it.
    Tls {
        addr: String,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
}

impl DockerEndpoint {
    /// How errors name the daemon.
    pub fn describe(&self) -> String {
        match self {
            Self::LocalSocket => DEFAULT_SOCKET.to_string(),
            Self::Socket(path) => {
                if path.starts_with("unix://") {
                    path.clone()
                } else {
                    format!("unix://{path}")
                }
            }
            Self::Tls { addr, .. } => addr.clone(),
        }
    }
}

const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// A connected daemon plus the name errors use for it and the per-call time bound.
#[derive(Clone)]
pub struct DockerClient {
    pub(crate) docker: Docker,
    pub(crate) endpoint: String,
    pub(crate) limit: Duration,
}

impl std::fmt::Debug for DockerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerClient")
            .field("endpoint", &self.endpoint)
            .field("limit", &self.limit)
            .finish()
    }
}

impl DockerClient {
    /// Connects and negotiates the API version (the daemon may be older than bollard's
    /// default, e.g. Debian's 20.10 speaks 1.41), all within `limit`.
    pub async fn connect(endpoint: &DockerEndpoint, limit: Duration) -> Result<Self, RuntimeError> {
        let name = endpoint.describe();
        let secs = limit.as_secs().max(1);
        let docker = match endpoint {
            DockerEndpoint::LocalSocket | DockerEndpoint::Socket(_) => {
                Docker::connect_with_unix(&name, secs, bollard::API_DEFAULT_VERSION)
            }
            DockerEndpoint::Tls {
                addr,
                ca,
                cert,
                key,
            } => {
                // bollard builds its TLS config from the process-wide provider; a binary that
                // links both ring and aws-lc-rs has none by default and bollard would panic.
                if rustls::crypto::CryptoProvider::get_default().is_none() {
                    let _ = rustls::crypto::ring::default_provider().install_default();
                }
                // bollard reads the key and cert only during the handshake and, if they are
                // unreadable, silently sends no certificate; check them here to say which.
                for (role, path) in [
                    ("CA", ca),
                    ("client certificate", cert),
                    ("client key", key),
                ] {
                    if let Err(e) = std::fs::File::open(path) {
                        return Err(RuntimeError::Other(format!(
                            "docker at {name}: TLS {role} {}: {e}",
                            path.display()
                        )));
                    }
                }
                Docker::connect_with_ssl(addr, key, cert, ca, secs, bollard::API_DEFAULT_VERSION)
            }
        }
        .map_err(|e| classify(&name, "connect", e))?;
        let docker = bounded(
            &name,
            "negotiate API version",
            limit,
            docker.negotiate_version(),
        )
        .await?;
        Ok(Self {
            docker,
            endpoint: name,
            limit,
        })
    }

    /// Wraps an already-built bollard client (tests, or callers with their own transport).
    pub fn from_docker(docker: Docker, endpoint: impl Into<String>, limit: Duration) -> Self {
        Self {
            docker,
            endpoint: endpoint.into(),
            limit,
        }
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Runs one Docker call within the client's limit.
    pub(crate) async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, BollardError>>,
    ) -> Result<T, RuntimeError> {
        bounded(&self.endpoint, what, self.limit, fut).await
    }

    /// Like [`DockerClient::call`], but hands back the daemon's own error so the caller can
    /// accept some statuses (404 on a missing container, 304 on a no-op); only a timeout is
    /// already turned into a [`RuntimeError`].
    pub(crate) async fn call_raw<T>(
        &self,
        what: &str,
        limit: Duration,
        fut: impl Future<Output = Result<T, BollardError>>,
    ) -> Result<Result<T, BollardError>, RuntimeError> {
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| self.timed_out(what, limit))
    }

    pub(crate) fn error(&self, what: &str, e: BollardError) -> RuntimeError {
        classify(&self.endpoint, what, e)
    }

    pub(crate) fn timed_out(&self, what: &str, limit: Duration) -> RuntimeError {
        timed_out(&self.endpoint, what, limit)
    }

    /// The same daemon with a longer per-request timeout, for calls that legitimately take
    /// long (a stop that waits for the server to save, an upload of a whole world).
    pub(crate) fn patient(&self, timeout: Duration) -> Docker {
        self.docker.clone().with_timeout(timeout)
    }
}

pub(crate) async fn bounded<T>(
    endpoint: &str,
    what: &str,
    limit: Duration,
    fut: impl Future<Output = Result<T, BollardError>>,
) -> Result<T, RuntimeError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| classify(endpoint, what, e)),
        Err(_) => Err(timed_out(endpoint, what, limit)),
    }
}

fn timed_out(endpoint: &str, what: &str, limit: Duration) -> RuntimeError {
    RuntimeError::Unreachable(format!(
        "docker at {endpoint}: {what}: no answer within {limit:?}"
    ))
}

/// Transport failures mean the daemon is unreachable; anything the daemon said is `Other`.
pub(crate) fn classify(endpoint: &str, what: &str, e: BollardError) -> RuntimeError {
    let msg = format!("docker at {endpoint}: {what}: {}", describe_error(&e));
    match e {
        BollardError::DockerResponseServerError { .. }
        | BollardError::JsonDataError { .. }
        | BollardError::JsonSerdeError { .. }
        | BollardError::DockerStreamError { .. }
        | BollardError::DockerContainerWaitError { .. }
        | BollardError::APIVersionParseError { .. }
        // Bad TLS material is a configuration problem, not an outage.
        | BollardError::CertPathError { .. }
        | BollardError::CertParseError { .. }
        | BollardError::CertMultipleKeys { .. }
        | BollardError::NoHomePathError
        | BollardError::NoNativeCertsError { .. }
        | BollardError::LoadNativeCertsErrors { .. } => RuntimeError::Other(msg),
        _ => RuntimeError::Unreachable(msg),
    }
}

fn describe_error(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{} (HTTP {status_code})", message.trim()),
        BollardError::SocketNotFoundError(path) => format!("socket {path} does not exist"),
        BollardError::RequestTimeoutError => "the daemon did not answer in time".into(),
        other => {
            // Hyper's Display hides the cause ("error trying to connect"); the chain has it.
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(cause) = src {
                let c = cause.to_string();
                if !s.contains(&c) {
                    s.push_str(": ");
                    s.push_str(&c);
                }
                src = cause.source();
            }
            s
        }
    }
}

/// The HTTP status of a daemon error, to tell "no such container" (404) and
/// "already stopped/started" (304) from real failures.
pub(crate) fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}
