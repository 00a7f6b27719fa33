//! `/v1/capacity`: what the fleet's capacity controller sees and decided (nodes, RAM in
//! use and waiting, the forecast against the actual demand, the plan's inputs and the last
//! decisions). The leader writes it to the store each round, so every appliance answers
//! the same.

use std::sync::Arc;

use axum::extract::State;
use warden_capacity::CapacityView;

use super::error::{ApiError, Json};
use super::ApiContext;

/// The capacity controller's last view. 404 when no appliance of this fleet runs one (no
/// `[capacity]` section) or it has not planned yet.
#[utoipa::path(get, path = "/v1/capacity", tag = "capacity",
    responses((status = 200, body = CapacityView), (status = 404, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)))]
pub async fn view(State(ctx): State<Arc<ApiContext>>) -> Result<Json<CapacityView>, ApiError> {
    match warden_capacity::view::read(ctx.store.as_ref()).await? {
        Some(v) => Ok(Json(v)),
        None => Err(ApiError::not_found(
            "no capacity plan yet: no appliance of this fleet has a [capacity] section, or its \
             controller has not finished a round",
        )),
    }
}
