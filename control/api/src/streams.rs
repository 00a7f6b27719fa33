//! Open event streams (`/v1/events/stream`) by token: at most `api.max_streams_per_token`
//! per token and `api.max_streams` in all (429 `too_many_streams` beyond), and a revoked
//! token's streams end: at once when it is revoked through this appliance, and within a
//! second on every appliance sharing the store (each re-checks the tokens of its open
//! streams whenever the store changes, and every second).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_stream::Stream;
use warden_store::StateStore;

use super::error::ApiError;
use super::tokens;
use crate::http_guard::{HttpMetrics, Refusal};

pub struct Streams {
    per_token: usize,
    total: usize,
    open: Mutex<HashMap<String, Open>>,
    metrics: HttpMetrics,
}

struct Open {
    count: usize,
    /// Becomes true when the token is revoked.
    revoked: watch::Sender<bool>,
}

impl Streams {
    pub fn new(per_token: usize, total: usize, metrics: HttpMetrics) -> Arc<Self> {
        Arc::new(Streams {
            per_token,
            total,
            open: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// A place for one more stream of `token_id`, or 429.
    pub fn open(self: &Arc<Self>, token_id: &str) -> Result<Permit, ApiError> {
        let mut open = self.open.lock();
        let held = open.get(token_id).map_or(0, |o| o.count);
        let all: usize = open.values().map(|o| o.count).sum();
        let refusal = if held >= self.per_token {
            Some((
                Refusal::StreamsPerToken,
                format!(
                    "this token already has {held} event streams open (api.max_streams_per_token)"
                ),
            ))
        } else if all >= self.total {
            Some((
                Refusal::StreamsTotal,
                format!("{all} event streams are open on this appliance (api.max_streams)"),
            ))
        } else {
            None
        };
        if let Some((why, message)) = refusal {
            drop(open);
            self.metrics.refused("api", why);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!("{message}; close one first"),
            ));
        }
        let entry = open.entry(token_id.to_string()).or_insert_with(|| Open {
            count: 0,
            revoked: watch::channel(false).0,
        });
        entry.count += 1;
        Ok(Permit {
            streams: self.clone(),
            token: token_id.to_string(),
            revoked: entry.revoked.subscribe(),
        })
    }

    /// Ends `token_id`'s open streams on this appliance.
    pub fn revoke(&self, token_id: &str) {
        if let Some(o) = self.open.lock().get(token_id) {
            o.revoked.send_replace(true);
        }
    }

    /// Ends the streams of tokens revoked anywhere: runs as long as the API.
    pub async fn end_revoked(self: Arc<Self>, store: Arc<dyn StateStore>) {
        let mut changes = store.watch();
        let mut watching = true;
        loop {
            tokio::select! {
                changed = changes.changed(), if watching => watching = changed.is_ok(),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let ids: Vec<String> = self.open.lock().keys().cloned().collect();
            for id in ids {
                // A store that does not answer revokes nothing; the next round retries.
                if let Ok(false) = tokens::exists(store.as_ref(), &id).await {
                    self.revoke(&id);
                }
            }
        }
    }
}

/// One open stream's place; given back when dropped.
pub struct Permit {
    streams: Arc<Streams>,
    token: String,
    revoked: watch::Receiver<bool>,
}

impl Permit {
    /// `stream`, ending when the token is revoked; holds this place as long as it lives.
    pub fn guard<S: Stream + Unpin>(self, stream: S) -> Guarded<S> {
        let mut revoked = self.revoked.clone();
        Guarded {
            inner: stream,
            revoked: Box::pin(async move {
                let _ = revoked.wait_for(|r| *r).await;
            }),
            ended: false,
            _permit: self,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock();
        if let Some(o) = open.get_mut(&self.token) {
            o.count = o.count.saturating_sub(1);
            if o.count == 0 {
                open.remove(&self.token);
            }
        }
    }
}

pub struct Guarded<S> {
    inner: S,
    revoked: Pin<Box<dyn Future<Output = ()> + Send>>,
    ended: bool,
    _permit: Permit,
}

impl<S: Stream + Unpin> Stream for Guarded<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.ended || self.revoked.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn caps_per_token_and_in_total_and_revocation_ends_streams() {
        let metrics = HttpMetrics::register(&prometheus::Registry::new()).unwrap();
        let s = Streams::new(2, 3, metrics);
        let a1 = s.open("a").unwrap();
        let _a2 = s.open("a").unwrap();
        assert_eq!(
            s.open("a").err().map(|e| e.status),
            Some(StatusCode::TOO_MANY_REQUESTS)
        );
        let _b1 = s.open("b").unwrap();
        assert!(s.open("c").is_err(), "3 in total");
        drop(_a2);
        let mut stream = a1.guard(tokio_stream::pending::<u8>());
        s.revoke("a");
        let ended = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
        assert_eq!(ended.ok(), Some(None));
        drop(stream);
        assert!(s.open("c").is_ok(), "places given back");
    }
}
