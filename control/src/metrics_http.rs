//! `/metrics` over HTTP, served by pingora so its listener survives graceful upgrades too.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use warden_proxy::metrics::Metrics;

pub struct MetricsHttp {
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl ServeHttp for MetricsHttp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
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
