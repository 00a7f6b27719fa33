//! `/v1/servers/{id}/backups`: a server's backups, and taking one now. A backup is an
//! action like the others (its id is followed at `/v1/actions/{id}`); restoring one is the
//! `restore` action with `{"backup": "ID"}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::actions::{launch, ActionInfo};
use super::dto::Action;
use super::error::{ApiError, Json, Path, Query};
use super::ApiContext;
use warden_lifecycle::Command;

/// One backup of a server's world.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupInfo {
    /// Its id (its UTC creation time), for `restore`.
    pub id: String,
    pub created_unix_ms: u64,
    /// Why it was taken: `scheduled`, `at stop`, `operator`, `before restoring …`.
    pub note: String,
    pub files: u64,
    /// The world's size.
    pub bytes: u64,
    /// What this backup added to the storage (compressed; unchanged files cost nothing).
    pub new_bytes: u64,
    /// Its manifest verified and every blob present (with `verify=true`: every blob read
    /// and hashed, as a restore would).
    pub verified: bool,
    /// Why it is not verified.
    pub problem: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Read and hash every blob of every backup (slow: reads them all). Default false.
    pub verify: Option<bool>,
}

/// The server's backups, newest first.
#[utoipa::path(get, path = "/v1/servers/{id}/backups", tag = "backups", operation_id = "list_backups",
    params(("id" = String, Path, description = "server id"), ListParams),
    responses((status = 200, body = Vec<BackupInfo>), (status = 404, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody)))]
pub async fn list(
    State(ctx): State<Arc<ApiContext>>,
    Path(id): Path<String>,
    Query(p): Query<ListParams>,
) -> Result<Json<Vec<BackupInfo>>, ApiError> {
    let list = ctx.engine.backups(&id, p.verify.unwrap_or(false)).await?;
    Ok(Json(
        list.into_iter()
            .map(|s| BackupInfo {
                id: s.id,
                created_unix_ms: s.created_unix_ms,
                note: s.note,
                files: s.files,
                bytes: s.bytes,
                new_bytes: s.new_bytes,
                verified: s.verified,
                problem: s.problem,
            })
            .collect(),
    ))
}

/// Takes a backup now: 202 with the action, as `POST /v1/servers/{id}/actions/backup`.
#[utoipa::path(post, path = "/v1/servers/{id}/backups", tag = "backups", operation_id = "create_backup",
    params(("id" = String, Path, description = "server id")),
    responses((status = 202, body = ActionInfo), (status = 404, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody)))]
pub async fn create(
    State(ctx): State<Arc<ApiContext>>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let info = launch(&ctx, id, Action::Backup, Command::Backup).await?;
    Ok((StatusCode::ACCEPTED, Json(info)))
}
