//! `/health/live` (the process answers) and `/health/ready` (the store answers and the
//! edge listener accepts), for load balancers and orchestrators. No token needed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::Json;
use super::ApiContext;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Readiness only: what is not ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        problems: Vec::new(),
    })
}

#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn ready(State(ctx): State<Arc<ApiContext>>) -> (StatusCode, Json<Health>) {
    let mut problems = Vec::new();
    if let Err(e) = ctx.store.health().await {
        problems.push(format!("store: {e}"));
    }
    for addr in &ctx.edge_listen {
        if let Err(why) = accepts(addr).await {
            problems.push(format!("edge listener {addr}: {why}"));
        }
    }
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let text = if problems.is_empty() {
        "ok"
    } else {
        "unavailable"
    };
    (
        status,
        Json(Health {
            status: text.into(),
            problems,
        }),
    )
}

/// Connects to a listen address (a wildcard address through loopback).
async fn accepts(addr: &str) -> Result<(), String> {
    let mut a: SocketAddr = addr.parse().map_err(|_| "not an address".to_string())?;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(a)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 1 s".into()),
    }
}
