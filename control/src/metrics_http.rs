//! `/metrics` over HTTP, served by pingora so its listener survives graceful upgrades too.
//! One request per connection, under the same connection limits and deadlines as the API
//! ([`warden_api::http_guard`], from `[metrics]`): a scraper reconnects for each scrape anyway.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::ServerApp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use warden_proxy::metrics::Metrics;

use warden_api::http_guard::{Admission, Admitted};

pub struct MetricsHttp {
    pub metrics: Arc<Metrics>,
    pub admission: Arc<Admission>,
}

#[async_trait]
impl ServerApp for MetricsHttp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let source = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let conn = self.admission.admit(source)?;
        conn.serve(self.exchange(stream, &conn)).await;
        None
    }
}

impl MetricsHttp {
    async fn exchange(&self, mut stream: Stream, conn: &Admitted) {
        // Idle until the first byte; from then on the request deadline runs.
        let mut first = [0u8; 1];
        match stream.try_peek(&mut first).await {
            Ok(true) => conn.first_byte(),
            Ok(false) => {}
            Err(_) => return,
        }
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive(None);
        if !matches!(session.read_request().await, Ok(true)) {
            return;
        }
        let response = {
            let _answering = conn.begin(true);
            self.response(session.req_header().uri.path())
        };
        let (parts, body) = response.into_parts();
        if session
            .write_response_header(Box::new(parts.into()))
            .await
            .is_err()
        {
            return;
        }
        if session
            .write_response_body(body.into(), true)
            .await
            .is_err()
        {
            return;
        }
        let _ = session.finish().await;
    }

    fn response(&self, path: &str) -> Response<Vec<u8>> {
        let (status, body, kind) = match path {
            "/metrics" => (
                StatusCode::OK,
                self.metrics.render().into_bytes(),
                "text/plain; version=0.0.4",
            ),
            "/health/live" => (StatusCode::OK, b"ok\n".to_vec(), "text/plain"),
            _ => (
                StatusCode::NOT_FOUND,
                b"not found: try /metrics\n".to_vec(),
                "text/plain",
            ),
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, kind)
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .unwrap_or_default()
    }
}
