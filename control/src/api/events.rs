//! `/v1/events`: lifecycle and player events as a filtered list, and live as Server-Sent
//! Events. Both read the store, so a dashboard attached to any appliance sees the whole
//! fleet's events, in the order they happened.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::IntoParams;
use warden_store::{now_unix_ms, StateStore, StoreError, TransitionFilter};

use super::auth::Caller;
use super::error::{ApiError, Json, Query, MAX_LIMIT};
use super::ApiContext;
use crate::events::Event;

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

/// Transitions and player joins/leaves, oldest first (the newest `limit`).
async fn fetch(
    store: &dyn StateStore,
    server: Option<&str>,
    since_ms: Option<u64>,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let transitions = store
        .transitions(&TransitionFilter {
            server: server.map(str::to_string),
            since_ms,
            limit,
        })
        .await?;
    let mut events: Vec<Event> = transitions.iter().map(Event::from_transition).collect();
    for s in store.sessions(server, false).await? {
        events.extend(Event::from_session(&s));
    }
    let since = since_ms.unwrap_or(0);
    events.retain(|e| e.at_unix_ms >= since);
    // Stable: transitions of the same millisecond keep the store's order.
    events.sort_by_key(|e| e.at_unix_ms);
    let skip = events.len().saturating_sub(limit);
    Ok(events.split_off(skip))
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventParams),
    responses((status = 200, body = Vec<Event>), (status = 422, body = super::error::ErrorBody)))]
pub async fn list(
    State(ctx): State<Arc<ApiContext>>,
    Query(p): Query<EventParams>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let limit = super::error::limit(p.limit)?;
    Ok(Json(
        fetch(ctx.store.as_ref(), p.server.as_deref(), p.since_ms, limit).await?,
    ))
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
    let store = ctx.store.clone();
    tokio::spawn(async move {
        let mut changes = store.watch();
        let mut cursor = now_unix_ms();
        // Events at the cursor's millisecond already sent (the next read includes it).
        let mut sent_at_cursor: HashSet<String> = HashSet::new();
        loop {
            if let Ok(events) =
                fetch(store.as_ref(), p.server.as_deref(), Some(cursor), MAX_LIMIT).await
            {
                for e in events {
                    let key = format!("{:?}|{}|{:?}|{:?}", e.kind, e.server, e.to, e.session);
                    if e.at_unix_ms == cursor && sent_at_cursor.contains(&key) {
                        continue;
                    }
                    if e.at_unix_ms > cursor {
                        cursor = e.at_unix_ms;
                        sent_at_cursor.clear();
                    }
                    sent_at_cursor.insert(key);
                    let Ok(data) = serde_json::to_string(&e) else {
                        continue;
                    };
                    let msg = SseEvent::default().event(e.name()).data(data);
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                }
            }
            // Re-read on every store change; the timeout notices a client that left.
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Ok(Sse::new(permit.guard(ReceiverStream::new(rx))).keep_alive(KeepAlive::default()))
}
