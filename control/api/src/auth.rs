//! Who may do what: every request but the OpenAPI document and the health checks carries
//! `Authorization: Bearer wdn_…`. The token's role must reach the route's role
//! ([`required_role`], the one place that decides), each token has a request rate limit,
//! and every write (allowed or not) goes to the audit log.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tracing::warn;
use utoipa::ToSchema;
use warden_store::now_unix_ms;

use super::error::ApiError;
use super::tokens::{self, Role, TokenInfo};
use super::ApiContext;

/// The store's log of writes.
pub const AUDIT_LOG: &str = "audit";

/// The role a request needs; None for public routes.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    if path == "/v1/openapi.json" || path.starts_with("/health/") {
        return None;
    }
    if path.starts_with("/v1/tokens") || path.starts_with("/v1/audit") {
        return Some(Role::Admin);
    }
    if method == Method::GET || method == Method::HEAD {
        return Some(Role::Viewer);
    }
    if path.starts_with("/v1/servers/")
        && (path.contains("/actions/") || path.trim_end_matches('/').ends_with("/backups"))
    {
        return Some(Role::Operator);
    }
    // Deleting orphans is an admin's decision.
    if path.starts_with("/v1/fleet/gc") {
        return Some(Role::Admin);
    }
    // Cordoning, draining or consolidating nodes is an operator's action, like waking a
    // server.
    if path.starts_with("/v1/nodes/") || path.starts_with("/v1/fleet/") {
        return Some(Role::Operator);
    }
    Some(Role::Admin)
}

/// The authenticated caller, for handlers that record who acted.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: TokenInfo,
}

/// One audit log entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub at_unix_ms: u64,
    pub token_id: String,
    pub token_name: String,
    pub role: Role,
    pub method: String,
    pub path: String,
    /// The server the request was about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The client's address.
    pub source: String,
    /// The HTTP status the request got.
    pub status: u16,
}

pub async fn layer(
    State(ctx): State<Arc<ApiContext>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Some(need) = required_role(&method, &path) else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return unauthorized("send Authorization: Bearer <token> (see `warden token create`)");
    };
    let token = match tokens::verify(ctx.store.as_ref(), presented).await {
        Ok(Some(t)) => t,
        Ok(None) => return unauthorized("unknown or revoked token"),
        Err(e) => return ApiError::from(e).into_response(),
    };
    if ctx.limiter.observe(&token.id, 1) > ctx.rate_limit as isize {
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {} requests per second with this token",
                ctx.rate_limit
            ),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return resp;
    }
    let write = method != Method::GET && method != Method::HEAD;
    let resp = if token.role < need {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this needs the {} role; the token has {}",
                need.as_str(),
                token.role.as_str()
            ),
        )
        .into_response()
    } else {
        req.extensions_mut().insert(Caller {
            token: token.clone(),
        });
        next.run(req).await
    };
    if write {
        let entry = AuditEntry {
            at_unix_ms: now_unix_ms(),
            token_id: token.id,
            token_name: token.name,
            role: token.role,
            method: method.to_string(),
            target: path
                .strip_prefix("/v1/servers/")
                .and_then(|rest| rest.split('/').next())
                .map(str::to_string),
            path,
            source: peer.ip().to_string(),
            status: resp.status().as_u16(),
        };
        match serde_json::to_string(&entry) {
            Ok(json) => {
                if let Err(e) = ctx.store.append_log(AUDIT_LOG, &json).await {
                    warn!(error = %e, ?entry, "audit entry not stored");
                }
            }
            Err(e) => warn!(error = %e, "audit entry not encoded"),
        }
    }
    resp
}

fn unauthorized(message: &str) -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_per_route() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(required_role(&get, "/health/ready"), None);
        assert_eq!(required_role(&get, "/v1/openapi.json"), None);
        assert_eq!(required_role(&get, "/v1/servers"), Some(Role::Viewer));
        assert_eq!(required_role(&get, "/v1/audit"), Some(Role::Admin));
        assert_eq!(required_role(&get, "/v1/tokens"), Some(Role::Admin));
        assert_eq!(
            required_role(&post, "/v1/servers/a/actions/wake"),
            Some(Role::Operator)
        );
        assert_eq!(
            required_role(&post, "/v1/servers/a/backups"),
            Some(Role::Operator)
        );
        assert_eq!(required_role(&post, "/v1/servers"), Some(Role::Admin));
        assert_eq!(required_role(&get, "/v1/nodes"), Some(Role::Viewer));
        assert_eq!(
            required_role(&post, "/v1/nodes/n1/cordon"),
            Some(Role::Operator)
        );
        assert_eq!(
            required_role(&post, "/v1/fleet/consolidate"),
            Some(Role::Operator)
        );
        assert_eq!(required_role(&post, "/v1/fleet/gc"), Some(Role::Admin));
        assert_eq!(
            required_role(&Method::DELETE, "/v1/servers/a"),
            Some(Role::Admin)
        );
    }
}
