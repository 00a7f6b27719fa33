//! `/v1/routes`: the routing table the edge uses right now, and which server a host
//! name would reach.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warden_proxy::wire::normalize_host;

use super::error::{ApiError, Json, Query};
use super::ApiContext;

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteInfo {
    /// A host name, or a pattern like `*.play.example.com`.
    pub host: String,
    pub server: String,
    /// `ip:port`; for patterns it may hold `{1}`… placeholders filled from the host.
    pub backend: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingTable {
    pub routes: Vec<RouteInfo>,
    /// The server unknown hosts go to; none means they are dropped.
    pub unknown_host: Option<String>,
}

#[utoipa::path(get, path = "/v1/routes", tag = "routes",
    responses((status = 200, body = RoutingTable)))]
pub async fn table(State(ctx): State<Arc<ApiContext>>) -> Json<RoutingTable> {
    let snapshot = ctx.edge.snapshot();
    Json(RoutingTable {
        routes: snapshot
            .table
            .hosts()
            .iter()
            .map(|(h, s)| RouteInfo {
                host: h.clone(),
                server: s.id.to_string(),
                backend: s.backend.clone(),
            })
            .collect(),
        unknown_host: snapshot.table.fallback().map(|s| s.id.to_string()),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ResolveParams {
    /// The host name a player would type (any case, optionally with a trailing dot).
    pub host: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Resolution {
    /// The host as Warden matches it (lower case, no trailing dot or FML suffix).
    pub host: String,
    pub server: String,
    /// The backend this host reaches, placeholders filled.
    pub backend: String,
}

/// Which server a player connecting with `host` would reach; 404 if they would be dropped.
#[utoipa::path(get, path = "/v1/routes/resolve", tag = "routes", params(ResolveParams),
    responses((status = 200, body = Resolution), (status = 404, body = super::error::ErrorBody),
              (status = 422, body = super::error::ErrorBody)))]
pub async fn resolve(
    State(ctx): State<Arc<ApiContext>>,
    Query(p): Query<ResolveParams>,
) -> Result<Json<Resolution>, ApiError> {
    let host = normalize_host(&p.host).map_err(|e| ApiError::invalid(format!("host: {e}")))?;
    let found = ctx.edge.snapshot().table.lookup(&host).ok_or_else(|| {
        ApiError::not_found(format!("{host} matches no route: players are dropped"))
    })?;
    Ok(Json(Resolution {
        host,
        server: found.server.id.to_string(),
        backend: found.backend.to_string(),
    }))
}
