//! `/v1/sessions` and `/v1/usage`: who plays where, and the billing input derived from
//! the same records.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warden_store::now_unix_ms;

use super::error::{ApiError, Json, Query};
use super::ApiContext;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SessionParams {
    /// Only this server's sessions.
    pub server: Option<String>,
    /// Only this player's sessions (name).
    pub player: Option<String>,
    /// Only the sessions still open (who is online now).
    #[serde(default)]
    pub open: bool,
    /// The newest this many (default 100, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    pub id: String,
    pub server: String,
    pub player: String,
    pub player_uuid: Option<String>,
    pub appliance: String,
    pub start_unix_ms: u64,
    pub end_unix_ms: Option<u64>,
}

/// Sessions, oldest first: who is online where (`open=true`), or the history of a server
/// or a player.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", params(SessionParams),
    responses((status = 200, body = Vec<SessionInfo>), (status = 422, body = super::error::ErrorBody)))]
pub async fn sessions(
    State(ctx): State<Arc<ApiContext>>,
    Query(p): Query<SessionParams>,
) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    let limit = super::error::limit(p.limit)?;
    let mut all: Vec<SessionInfo> = ctx
        .store
        .sessions(p.server.as_deref(), p.open)
        .await?
        .into_iter()
        .filter(|s| p.player.as_deref().is_none_or(|name| s.player == name))
        .map(|s| SessionInfo {
            id: s.id,
            server: s.server,
            player: s.player,
            player_uuid: s.player_uuid,
            appliance: s.appliance,
            start_unix_ms: s.start_unix_ms,
            end_unix_ms: s.end_unix_ms,
        })
        .collect();
    let skip = all.len().saturating_sub(limit);
    Ok(Json(all.split_off(skip)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// One server; all managed servers otherwise.
    pub server: Option<String>,
    /// Period start (Unix ms); default 30 days before `to_ms`.
    pub from_ms: Option<u64>,
    /// Period end (Unix ms); default now.
    pub to_ms: Option<u64>,
}

/// One server's usage in a period: the billing input.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageInfo {
    pub server: String,
    pub from_ms: u64,
    pub to_ms: u64,
    /// Memory held while running (starting, active, stopping, swapping), in GB × hours.
    pub active_gb_hours: f64,
    /// Memory-sized allowance while asleep with the world on the node, in GB × hours.
    pub sleeping_gb_hours: f64,
    /// Archive storage held, in GB × hours (GB = 10^9 bytes).
    pub archived_gb_hours: f64,
    /// The archive's size now, in GB.
    pub archived_gb: f64,
    /// Player time, summed over players.
    pub player_minutes: f64,
}

#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(UsageParams),
    responses((status = 200, body = Vec<UsageInfo>), (status = 404, body = super::error::ErrorBody),
              (status = 422, body = super::error::ErrorBody)))]
pub async fn usage(
    State(ctx): State<Arc<ApiContext>>,
    Query(p): Query<UsageParams>,
) -> Result<Json<Vec<UsageInfo>>, ApiError> {
    let to = p.to_ms.unwrap_or_else(now_unix_ms);
    let from = p.from_ms.unwrap_or(to.saturating_sub(30 * 86_400_000));
    if from > to {
        return Err(ApiError::invalid("from_ms is after to_ms"));
    }
    let ids = match &p.server {
        Some(id) if ctx.engine.view(id).is_some() => vec![id.clone()],
        Some(id) => return Err(ApiError::not_found(format!("no managed server `{id}`"))),
        None => {
            let mut ids = ctx.engine.ids();
            ids.sort();
            ids
        }
    };
    let mut out = Vec::new();
    for id in ids {
        let Some(view) = ctx.engine.view(&id) else {
            continue;
        };
        let u = ctx.store.usage(&id, from, to, view.memory_gb).await?;
        out.push(UsageInfo {
            server: id,
            from_ms: from,
            to_ms: to,
            active_gb_hours: u.active_gb_seconds / 3600.0,
            sleeping_gb_hours: u.sleeping_gb_hours,
            archived_gb_hours: u.archived_byte_hours / 1e9,
            archived_gb: view.archive_bytes.unwrap_or(0) as f64 / 1e9,
            player_minutes: u.player_minutes,
        });
    }
    Ok(Json(out))
}
