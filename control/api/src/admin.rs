//! `/v1/tokens` and `/v1/audit`: admin-only.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{AuditEntry, Caller, AUDIT_LOG};
use super::error::{ApiError, Json, Path, Query};
use super::tokens::{self, Role, TokenInfo};
use super::ApiContext;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub role: Role,
    /// Who or what uses it, e.g. "grafana" or "alice".
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: TokenInfo,
    /// The bearer secret. Shown once: only its hash is stored.
    pub secret: String,
}

#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenInfo>), (status = 403, body = super::error::ErrorBody)))]
pub async fn list(State(ctx): State<Arc<ApiContext>>) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(tokens::list(ctx.store.as_ref()).await?))
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 422, body = super::error::ErrorBody)))]
pub async fn create(
    State(ctx): State<Arc<ApiContext>>,
    Json(req): Json<NewToken>,
) -> Result<impl IntoResponse, ApiError> {
    tokens::check_name(&req.name).map_err(ApiError::invalid)?;
    let (token, secret) = tokens::create(ctx.store.as_ref(), req.role, &req.name).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, secret })))
}

#[utoipa::path(delete, path = "/v1/tokens/{token_id}", tag = "tokens",
    params(("token_id" = String, Path, description = "the token's id (not its secret)")),
    responses((status = 204), (status = 404, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody)))]
pub async fn revoke(
    State(ctx): State<Arc<ApiContext>>,
    caller: Option<axum::Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found(format!("no token `{id}`")));
    }
    // Nobody locks themselves out by accident: another admin token revokes this one.
    if caller.is_some_and(|c| c.token.id == id) {
        return Err(ApiError::conflict(
            "this is the token making the request; revoke it with another admin token",
        ));
    }
    if tokens::revoke(ctx.store.as_ref(), &id).await? {
        ctx.streams.revoke(&id);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no token `{id}`")))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// The newest this many (default 100, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// Every write through the API, oldest first: who, what, when, from where, and the result.
#[utoipa::path(get, path = "/v1/audit", tag = "tokens", params(AuditParams),
    responses((status = 200, body = Vec<AuditEntry>), (status = 403, body = super::error::ErrorBody)))]
pub async fn audit(
    State(ctx): State<Arc<ApiContext>>,
    Query(p): Query<AuditParams>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = super::error::limit(p.limit)?;
    let lines = ctx.store.read_log(AUDIT_LOG, limit).await?;
    Ok(Json(
        lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
    ))
}
