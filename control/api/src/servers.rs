//! `/v1/servers`: what runs where, and defining servers at run time.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warden_proxy::loopguard::backend_points_at;
use warden_proxy::wire::normalize_host;
use warden_store::{ServerState, TransitionFilter};

use super::dto::Event;
use super::error::{ApiError, Json, Path, Query};
use super::ApiContext;
use crate::spec::ServerSpec;
use warden_lifecycle::events;
use warden_lifecycle::Command;

/// Where a server is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The config file (change it there).
    Config,
    /// This API.
    Api,
    /// A Docker container's labels.
    Discovered,
}

/// A server and how it is doing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerInfo {
    pub id: String,
    pub source: Source,
    /// Warden starts and stops it (false: always on, routing only).
    pub managed: bool,
    /// `starting`, `active`, `stopping`, `sleeping`, `archiving`, `archived`, `restoring`,
    /// `swapping` or `failed`; always `active` for servers Warden does not manage.
    pub state: String,
    pub reason: Option<String>,
    pub since_unix_ms: Option<u64>,
    /// Players on it now, over every appliance.
    pub players_online: u64,
    pub hosts: Vec<String>,
    pub backend: String,
    /// The node that owns it (runs, sleeps and archives it): chosen by placement when the
    /// server was first seen, moved by a migration.
    pub node: Option<String>,
    pub memory_gb: Option<f64>,
    /// Expected time to start, from recent starts.
    pub eta_secs: Option<u64>,
    pub last_transition: Option<Event>,
    /// Size of its verified archive.
    pub archived_bytes: Option<u64>,
    /// When its newest backup was taken (see `/v1/servers/{id}/backups`).
    pub last_backup_unix_ms: Option<u64>,
    /// The definition, for servers created through the API.
    pub spec: Option<ServerSpec>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Stop and delete it even with players on it.
    #[serde(default)]
    pub force: bool,
}

async fn info(ctx: &ApiContext, id: &str, specs: &[ServerSpec]) -> Result<ServerInfo, ApiError> {
    let snapshot = ctx.edge.snapshot();
    let routed = snapshot.table.server(id).cloned();
    let view = ctx.engine.view(id);
    let spec = specs.iter().find(|s| s.id == id).cloned();
    if routed.is_none() && view.is_none() && spec.is_none() {
        return Err(ApiError::not_found(format!("no server `{id}`")));
    }
    let source = if ctx.configured.iter().any(|c| c == id) {
        Source::Config
    } else if spec.is_some() {
        Source::Api
    } else {
        Source::Discovered
    };
    let hosts = snapshot
        .table
        .hosts()
        .iter()
        .filter(|(_, s)| &*s.id == id)
        .map(|(h, _)| h.clone())
        .collect();
    let last = ctx
        .store
        .transitions(&TransitionFilter {
            server: Some(id.to_string()),
            since_ms: None,
            limit: 1,
        })
        .await?;
    let players = ctx.store.live_count(id).await?;
    Ok(ServerInfo {
        id: id.to_string(),
        source,
        managed: view.is_some(),
        state: view
            .as_ref()
            .map_or("active", |v| v.state.as_str())
            .to_string(),
        reason: view.as_ref().map(|v| v.reason.clone()),
        since_unix_ms: view.as_ref().map(|v| v.since_unix_ms),
        players_online: players,
        hosts,
        backend: routed
            .as_ref()
            .map(|s| s.backend.clone())
            .or_else(|| view.as_ref().map(|v| v.backend.clone()))
            .unwrap_or_default(),
        node: view.as_ref().and_then(|v| {
            v.placed
                .clone()
                .or_else(|| v.local.then(|| ctx.engine.appliance().to_string()))
        }),
        memory_gb: view.as_ref().map(|v| v.memory_gb),
        eta_secs: view.as_ref().and_then(|v| v.eta).map(|d| d.as_secs()),
        last_transition: last
            .last()
            .map(|t| events::Event::from_transition(t).into()),
        archived_bytes: view.as_ref().and_then(|v| v.archive_bytes),
        last_backup_unix_ms: view.as_ref().and_then(|v| v.last_backup_unix_ms),
        spec,
    })
}

/// Every server: routed ones and managed ones.
#[utoipa::path(get, path = "/v1/servers", tag = "servers",
    responses((status = 200, body = Vec<ServerInfo>), (status = 401, body = super::error::ErrorBody)))]
pub async fn list(State(ctx): State<Arc<ApiContext>>) -> Result<Json<Vec<ServerInfo>>, ApiError> {
    let specs = ctx.catalog.list().await?;
    let mut ids: Vec<String> = ctx
        .edge
        .snapshot()
        .table
        .servers()
        .iter()
        .map(|s| s.id.to_string())
        .chain(ctx.engine.ids())
        .chain(specs.iter().map(|s| s.id.clone()))
        .collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(info(&ctx, &id, &specs).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/v1/servers/{id}", tag = "servers",
    params(("id" = String, Path, description = "server id")),
    responses((status = 200, body = ServerInfo), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(
    State(ctx): State<Arc<ApiContext>>,
    Path(id): Path<String>,
) -> Result<Json<ServerInfo>, ApiError> {
    let specs = ctx.catalog.list().await?;
    Ok(Json(info(&ctx, &id, &specs).await?))
}

/// Refuses an invalid spec, a backend that is Warden itself, and an id or host that
/// another server already has.
fn check_free(ctx: &ApiContext, spec: &ServerSpec) -> Result<(), ApiError> {
    spec.check().map_err(ApiError::invalid)?;
    let own = ctx.edge.loops.listeners();
    let backends = std::iter::once(("backend".to_string(), &spec.backend)).chain(
        spec.node_backends
            .iter()
            .map(|(node, addr)| (format!("node_backends.{node}"), addr)),
    );
    for (field, addr) in backends {
        if backend_points_at(own, addr) {
            return Err(ApiError::invalid(format!(
                "{field} {addr:?} is one of this Warden's own listeners (edge, API or \
                 metrics): every join would loop through Warden; use the game server's address"
            )));
        }
    }
    if ctx.configured.contains(&spec.id) {
        return Err(ApiError::conflict(format!(
            "`{}` is defined in the config file",
            spec.id
        )));
    }
    let snapshot = ctx.edge.snapshot();
    for host in &spec.hosts {
        let host = normalize_host(host).map_err(|e| ApiError::invalid(e.to_string()))?;
        if let Some((_, owner)) = snapshot
            .table
            .hosts()
            .iter()
            .find(|(h, s)| *h == host && *s.id != *spec.id)
        {
            return Err(ApiError::conflict(format!(
                "host {host} already belongs to server `{}`",
                owner.id
            )));
        }
    }
    Ok(())
}

/// Refuses a managed server that no node of the fleet could ever run (larger than every
/// node, or asking for labels none has).
fn check_fits(ctx: &ApiContext, spec: &ServerSpec) -> Result<(), ApiError> {
    if spec.runtime.is_none() {
        return Ok(());
    }
    match ctx.engine.unplaceable(spec.memory_gb, &spec.node_labels) {
        Some(why) => Err(ApiError::invalid(format!(
            "`{}` cannot be placed: {why}",
            spec.id
        ))),
        None => Ok(()),
    }
}

/// Defines a new server; it is routed (and managed, with a runtime) at once, on every
/// appliance sharing the store.
#[utoipa::path(post, path = "/v1/servers", tag = "servers", request_body = ServerSpec,
    responses((status = 201, body = ServerInfo), (status = 409, body = super::error::ErrorBody),
              (status = 422, body = super::error::ErrorBody)))]
pub async fn create(
    State(ctx): State<Arc<ApiContext>>,
    Json(spec): Json<ServerSpec>,
) -> Result<impl IntoResponse, ApiError> {
    check_free(&ctx, &spec)?;
    check_fits(&ctx, &spec)?;
    if ctx.engine.view(&spec.id).is_some() || ctx.edge.snapshot().table.server(&spec.id).is_some() {
        return Err(ApiError::conflict(format!("server `{}` exists", spec.id)));
    }
    ctx.catalog.put(&spec, true).await?;
    let specs = ctx.catalog.list().await?;
    Ok((
        StatusCode::CREATED,
        Json(info(&ctx, &spec.id, &specs).await?),
    ))
}

/// Replaces an API-defined server's definition.
#[utoipa::path(put, path = "/v1/servers/{id}", tag = "servers", request_body = ServerSpec,
    params(("id" = String, Path, description = "server id")),
    responses((status = 200, body = ServerInfo), (status = 404, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn update(
    State(ctx): State<Arc<ApiContext>>,
    Path(id): Path<String>,
    Json(spec): Json<ServerSpec>,
) -> Result<Json<ServerInfo>, ApiError> {
    if spec.id != id {
        return Err(ApiError::invalid(format!(
            "the body's id `{}` is not the path's `{id}`",
            spec.id
        )));
    }
    api_defined(&ctx, &id).await?;
    check_free(&ctx, &spec)?;
    check_fits(&ctx, &spec)?;
    if let Some(v) = ctx.engine.view(&id) {
        if !matches!(
            v.state,
            ServerState::Active
                | ServerState::Sleeping
                | ServerState::Archived
                | ServerState::Failed
        ) {
            return Err(ApiError::conflict(format!(
                "`{id}` is {}; change it once that is over",
                v.state
            )));
        }
    }
    ctx.catalog.put(&spec, false).await?;
    let specs = ctx.catalog.list().await?;
    Ok(Json(info(&ctx, &id, &specs).await?))
}

async fn api_defined(ctx: &ApiContext, id: &str) -> Result<ServerSpec, ApiError> {
    match ctx.catalog.get(id).await? {
        Some(spec) => Ok(spec),
        None if ctx.configured.iter().any(|c| c == id) => Err(ApiError::conflict(format!(
            "`{id}` is defined in the config file; change it there"
        ))),
        None if ctx.engine.view(id).is_some() => Err(ApiError::conflict(format!(
            "`{id}` comes from Docker labels; change the container's labels"
        ))),
        None => Err(ApiError::not_found(format!("no API-defined server `{id}`"))),
    }
}

/// Deletes an API-defined server: it is stopped first and no longer routed. Its world
/// (directory, volume, archive) is kept.
#[utoipa::path(delete, path = "/v1/servers/{id}", tag = "servers",
    params(("id" = String, Path, description = "server id"), DeleteParams),
    responses((status = 204), (status = 404, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody)))]
pub async fn delete(
    State(ctx): State<Arc<ApiContext>>,
    Path(id): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Result<StatusCode, ApiError> {
    api_defined(&ctx, &id).await?;
    let players = ctx.store.live_count(&id).await?;
    if players > 0 && !params.force {
        return Err(ApiError::conflict(format!(
            "`{id}` has {players} players online; pass force=true to delete it anyway"
        )));
    }
    if ctx
        .engine
        .view(&id)
        .is_some_and(|v| v.state == ServerState::Active)
    {
        let stop = ctx
            .engine
            .prepare(&id, Command::Sleep { force: true })
            .await
            .map_err(|e| ApiError::conflict(e.to_string()))?;
        stop.await
            .map_err(|e| ApiError::conflict(format!("stopping `{id}` failed: {e}")))?;
    }
    ctx.catalog.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
