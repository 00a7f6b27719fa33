//! Readiness: a server is ready when it answers a status ping (and, for a Docker image
//! with a healthcheck, once Docker calls it healthy).
//!
//! That works for every server type and version (lazymc and Infrarust do the same), and
//! it is what matters to a player: the server accepts Minecraft connections. The probe
//! polls every 25 ms: until the server listens each probe is a refused connect costing
//! microseconds, and the poll period is most of the wait a held player adds to a start
//! (lazymc polls every 2 s). `warden-bench wake` measures it.

use std::time::Duration;

use tokio::time::Instant;
use warden_proxy::status::fetch::{StatusQuery, DEFAULT_MAX_STATUS_BYTES};
use warden_proxy::status::{fetch_status, FetchError};
use warden_runtime::{Runtime, RuntimeError};

/// The runtime's verdict on a server that answers pings: only an explicit "not healthy"
/// holds it back; no healthcheck, or a daemon that cannot be asked, does not.
fn ready(health: Result<Option<bool>, RuntimeError>) -> bool {
    !matches!(health, Ok(Some(false)))
}

const POLL: Duration = Duration::from_millis(25);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Polls `backend` until it answers a status request and the runtime does not call it
/// unhealthy (a Docker healthcheck still starting), or until `deadline` passes.
pub async fn wait_ready(
    backend: &str,
    proxy_protocol: bool,
    runtime: &dyn Runtime,
    deadline: Instant,
) -> bool {
    loop {
        let q = StatusQuery {
            backend,
            address: "warden-readiness-probe",
            port: 25565,
            protocol: -1,
            proxy_protocol,
        };
        // A status bigger than the edge would serve still shows the server is up.
        let answered = matches!(
            fetch_status(q, PROBE_TIMEOUT, DEFAULT_MAX_STATUS_BYTES).await,
            Ok(_) | Err(FetchError::TooLarge { .. })
        );
        if answered && ready(runtime.healthy().await) {
            return true;
        }
        if Instant::now() + POLL >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_unhealthy_verdict_holds_a_server_back() {
        assert!(ready(Ok(None)));
        assert!(ready(Ok(Some(true))));
        assert!(!ready(Ok(Some(false))));
        assert!(ready(Err(RuntimeError::Other("daemon away".into()))));
    }
}
