//! Long operator actions (wake, sleep, archive, restore, restart, migrate, backup): the request
//! returns at once with an action id, and `GET /v1/actions/{id}` tells how it went. The
//! list is this appliance's memory of its last [`KEEP`] actions; the lasting record is
//! the server's transitions and the audit log.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use tracing::info;
use utoipa::ToSchema;
use warden_store::now_unix_ms;

use super::dto::Action;
use super::error::{ApiError, Json, Path};
use super::ApiContext;
use warden_lifecycle::Command;

const KEEP: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActionInfo {
    pub id: String,
    pub server: String,
    pub action: Action,
    pub progress: Progress,
    pub started_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    /// What happened, or why it failed.
    pub message: Option<String>,
}

/// Options of an action; every field is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// restart: start the replacement on this image (Docker servers).
    #[serde(default)]
    pub image: Option<String>,
    /// migrate: the appliance to move to.
    #[serde(default)]
    pub to: Option<String>,
    /// sleep: stop even with players on it.
    #[serde(default)]
    pub force: bool,
    /// restore: the backup to restore (an id from `GET /v1/servers/{id}/backups`, or
    /// `latest`) into the sleeping server, instead of bringing back its archive.
    #[serde(default)]
    pub backup: Option<String>,
}

#[derive(Default)]
pub struct Actions {
    recent: parking_lot::Mutex<VecDeque<ActionInfo>>,
}

impl Actions {
    fn insert(&self, a: ActionInfo) {
        let mut r = self.recent.lock();
        if r.len() >= KEEP {
            r.pop_front();
        }
        r.push_back(a);
    }

    fn finish(&self, id: &str, result: Result<String, String>) {
        if let Some(a) = self.recent.lock().iter_mut().find(|a| a.id == id) {
            a.finished_unix_ms = Some(now_unix_ms());
            (a.progress, a.message) = match result {
                Ok(m) => (Progress::Succeeded, Some(m)),
                Err(m) => (Progress::Failed, Some(m)),
            };
        }
    }

    fn get(&self, id: &str) -> Option<ActionInfo> {
        self.recent.lock().iter().find(|a| a.id == id).cloned()
    }
}

/// Starts an action; 202 with its id, or 404/409 if it cannot start.
#[utoipa::path(post, path = "/v1/servers/{id}/actions/{action}", tag = "actions",
    request_body = ActionRequest,
    params(("id" = String, Path, description = "server id"),
           ("action" = Action, Path, description = "what to do")),
    responses((status = 202, body = ActionInfo), (status = 404, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn start(
    State(ctx): State<Arc<ApiContext>>,
    Path((server, action)): Path<(String, Action)>,
    Json(req): Json<ActionRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let command = Command::new(action.into(), req.image, req.to, req.force, req.backup)
        .map_err(ApiError::invalid)?;
    launch(&ctx, server, action, command)
        .await
        .map(|info| (StatusCode::ACCEPTED, Json(info)))
}

/// Starts `command` on `server` and remembers it under a new action id.
pub(crate) async fn launch(
    ctx: &Arc<ApiContext>,
    server: String,
    action: Action,
    command: Command,
) -> Result<ActionInfo, ApiError> {
    if ctx.engine.view(&server).is_none() && ctx.edge.snapshot().table.server(&server).is_some() {
        return Err(ApiError::conflict(format!(
            "`{server}` is always on: Warden does not manage it (it has no runtime)"
        )));
    }
    let run = ctx.engine.prepare(&server, command).await?;
    let id = format!("act-{}", super::tokens::random_hex(8)?);
    let info = ActionInfo {
        id: id.clone(),
        server: server.clone(),
        action,
        progress: Progress::Running,
        started_unix_ms: now_unix_ms(),
        finished_unix_ms: None,
        message: None,
    };
    ctx.actions.insert(info.clone());
    let name = warden_lifecycle::Action::from(action).as_str();
    info!(action = name, %server, %id, "action started");
    let ctx2 = ctx.clone();
    tokio::spawn(async move {
        let result = run.await.map_err(|e| e.to_string());
        info!(action = name, %server, %id, ?result, "action finished");
        ctx2.actions.finish(&id, result);
    });
    Ok(info)
}

#[utoipa::path(get, path = "/v1/actions/{action_id}", tag = "actions",
    params(("action_id" = String, Path, description = "the id a POST returned")),
    responses((status = 200, body = ActionInfo), (status = 404, body = super::error::ErrorBody)))]
pub async fn get(
    State(ctx): State<Arc<ApiContext>>,
    Path(id): Path<String>,
) -> Result<Json<ActionInfo>, ApiError> {
    ctx.actions
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no action `{id}` on this appliance")))
}

/// This appliance's recent actions, newest first.
#[utoipa::path(get, path = "/v1/actions", tag = "actions",
    responses((status = 200, body = Vec<ActionInfo>)))]
pub async fn list(State(ctx): State<Arc<ApiContext>>) -> Json<Vec<ActionInfo>> {
    Json(ctx.actions.recent.lock().iter().rev().cloned().collect())
}
