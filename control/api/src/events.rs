//! `/v1/events`: lifecycle and player events as a filtered list, and live as Server-Sent
//! Events. Both read the store, so a dashboard attached to any appliance sees the whole
//! fleet's events, in the order they happened.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::IntoParams;
use warden_store::{StateStore, StoreError, TransitionFilter};

use super::auth::Caller;
use super::dto::Event;
use super::error::{ApiError, Json, Query};
use super::ApiContext;
use warden_lifecycle::events::Event as EngineEvent;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Only this server's events.
    pub server: Option<String>,
    /// Only events at or after this time (Unix ms).
    pub since_ms: Option<u64>,
    /// The newest this many (default 100, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Only this server's events.
    pub server: Option<String>,
}

/// Transitions and player joins/leaves, oldest first (the newest `limit`). Both come from
/// time indexes, so the cost follows `limit`, not the length of the history.
async fn fetch(
    store: &dyn StateStore,
    server: Option<&str>,
    since_ms: Option<u64>,
    limit: usize,
) -> Result<Vec<EngineEvent>, StoreError> {
    let transitions = store
        .transitions(&TransitionFilter {
            server: server.map(str::to_string),
            since_ms,
            limit,
        })
        .await?;
    let mut events: Vec<EngineEvent> = transitions
        .iter()
        .map(EngineEvent::from_transition)
        .collect();
    let sessions = store
        .session_events(server, since_ms.unwrap_or(0), limit)
        .await?;
    events.extend(sessions.iter().map(EngineEvent::from_history));
    // Stable: transitions of the same millisecond keep the store's order.
    events.sort_by_key(|e| e.at_unix_ms);
    let skip = events.len().saturating_sub(limit);
    Ok(events.split_off(skip))
}

/// Feed entries read per store call while a stream catches up.
const PAGE: usize = 1000;

/// Sends what the store records after the stream started, read from the history feed's
/// cursor: each wake-up reads only the entries that are new, never the history.
async fn follow(
    store: Arc<dyn StateStore>,
    server: Option<String>,
    tx: tokio::sync::mpsc::Sender<Result<SseEvent, Infallible>>,
) {
    let mut changes = store.watch();
    // None until the store answers: the stream starts at the feed's head.
    let mut cursor: Option<u64> = None;
    loop {
        let mut caught_up = true;
        match cursor {
            None => cursor = store.history_head().await.ok(),
            Some(at) => {
                if let Ok(page) = store.history_after(at, PAGE).await {
                    if page.head < at {
                        // The store lost its history (a Redis without persistence
                        // restarted): follow its new positions.
                        cursor = Some(page.head);
                        continue;
                    }
                    caught_up = page.entries.len() < PAGE;
                    for (position, h) in page.entries {
                        cursor = Some(position);
                        if server.as_deref().is_some_and(|s| s != h.server()) {
                            continue;
                        }
                        let e = EngineEvent::from_history(&h);
                        let name = e.name();
                        let Ok(data) = serde_json::to_string(&Event::from(e)) else {
                            continue;
                        };
                        let msg = SseEvent::default().event(name).data(data);
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if !caught_up {
            continue;
        }
        // Read on every store change; the timeout notices a client that left.
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = tx.closed() => return,
        }
    }
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventParams),
    responses((status = 200, body = Vec<Event>), (status = 422, body = super::error::ErrorBody)))]
pub async fn list(
    State(ctx): State<Arc<ApiContext>>,
    Query(p): Query<EventParams>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let limit = super::error::limit(p.limit)?;
    let events = fetch(ctx.store.as_ref(), p.server.as_deref(), p.since_ms, limit).await?;
    Ok(Json(events.into_iter().map(Event::from).collect()))
}

/// Live events as `text/event-stream`: each event's `event:` is its kind and `data:` the
/// event as JSON. Starts with what happens after the request.
/// A token has at most `api.max_streams_per_token` open (429 beyond); a stream ends when
/// its token is revoked.
#[utoipa::path(get, path = "/v1/events/stream", tag = "events", params(StreamParams),
    responses((status = 200, description = "Server-Sent Events, one Event per message", content_type = "text/event-stream"),
              (status = 429, body = super::error::ErrorBody)))]
pub async fn stream(
    State(ctx): State<Arc<ApiContext>>,
    caller: Option<axum::Extension<Caller>>,
    Query(p): Query<StreamParams>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    let token = caller.map(|c| c.token.id.clone()).unwrap_or_default();
    let permit = ctx.streams.open(&token)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(256);
    tokio::spawn(follow(ctx.store.clone(), p.server, tx));
    Ok(Sse::new(permit.guard(ReceiverStream::new(rx))).keep_alive(KeepAlive::default()))
}
