//! The history feed and session retention (hardening issue 12, finding 6): every state
//! change, join and leave is appended to a feed in the order the store committed it, so a
//! live reader keeps a cursor and reads only what is new; sessions older than the
//! retention are removed, their player time folded into hourly aggregates first, so usage
//! for pruned periods stays right. Shared by both stores, so they cannot disagree.

use serde::{Deserialize, Serialize};

use crate::model::{SessionRecord, Transition};

/// The width of one player-time aggregate: usage of pruned periods is exact for whole
/// hours and shared out in proportion within a partial hour.
pub const AGGREGATE_MS: u64 = 3_600_000;

/// One thing that happened, as the feed and the session time index return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "record", rename_all = "snake_case")]
pub enum HistoryEvent {
    /// A server changed state.
    Transition(Transition),
    /// A session started.
    Joined(SessionRecord),
    /// A session ended (its record has `end_unix_ms`).
    Left(SessionRecord),
    /// Something that happened to the fleet rather than to one server (a capacity
    /// decision), for the live feed.
    Fleet(FleetEvent),
}

/// A fleet-wide event: its `kind` (the webhook name, e.g. `scaling`), the node it concerns,
/// and why, with the numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetEvent {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub reason: String,
    pub at_unix_ms: u64,
}

impl HistoryEvent {
    /// When it happened.
    pub fn at_unix_ms(&self) -> u64 {
        match self {
            HistoryEvent::Transition(t) => t.at_unix_ms,
            HistoryEvent::Joined(s) => s.start_unix_ms,
            HistoryEvent::Left(s) => s.end_unix_ms.unwrap_or(s.start_unix_ms),
            HistoryEvent::Fleet(e) => e.at_unix_ms,
        }
    }

    /// The server it happened on ("" for a fleet event).
    pub fn server(&self) -> &str {
        match self {
            HistoryEvent::Transition(t) => &t.server,
            HistoryEvent::Joined(s) | HistoryEvent::Left(s) => &s.server,
            HistoryEvent::Fleet(_) => "",
        }
    }
}

/// What [`crate::StateStore::history_after`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// `(position, event)`, oldest first; the last position is the next cursor.
    pub entries: Vec<(u64, HistoryEvent)>,
    /// The newest position the store has handed out. Below the caller's cursor only when
    /// the store lost its data (a Redis without persistence restarted): go on from here.
    pub head: u64,
}

/// What one [`crate::StateStore::prune_history`] call removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: u64,
    pub feed_entries: u64,
}

impl Pruned {
    /// Whether a call with this `batch` may have left more to remove.
    pub fn more(&self, batch: usize) -> bool {
        let batch = batch as u64;
        self.sessions >= batch || self.feed_entries >= batch
    }
}

/// A session's player time split over the aggregate hours it touches: `(hour start, ms)`.
pub fn player_ms_by_hour(start_ms: u64, end_ms: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut hour = start_ms - start_ms % AGGREGATE_MS;
    while hour < end_ms {
        let next = hour.saturating_add(AGGREGATE_MS);
        let (a, b) = (start_ms.max(hour), end_ms.min(next));
        if b > a {
            out.push((hour, b - a));
        }
        hour = next;
    }
    out
}

/// The newest `limit` of `events` by time, oldest first (joins before leaves of the same
/// millisecond, as they were collected).
pub(crate) fn newest_in_order(mut events: Vec<HistoryEvent>, limit: usize) -> Vec<HistoryEvent> {
    events.sort_by_key(HistoryEvent::at_unix_ms);
    let skip = events.len().saturating_sub(limit);
    events.split_off(skip)
}

/// A feed entry's text: when the store recorded it (fixed width, so the retention prunes
/// the oldest entries without decoding them; the feed is in recording order, while an
/// event's own time may be earlier), then the event's JSON. Redis prefixes the position;
/// redb keys by it.
pub(crate) fn feed_payload(
    event: &HistoryEvent,
    recorded_unix_ms: u64,
) -> Result<String, crate::StoreError> {
    Ok(format!(
        "{recorded_unix_ms:020}|{}",
        crate::error::encode(event)?
    ))
}

/// The recording time of a [`feed_payload`], without decoding the event.
pub(crate) fn payload_time(payload: &str) -> Result<u64, crate::StoreError> {
    payload
        .split_once('|')
        .and_then(|(at, _)| at.parse().ok())
        .ok_or_else(|| crate::StoreError::Corrupt {
            key: "history feed entry".to_string(),
            detail: format!("no time prefix in `{payload}`"),
        })
}

/// The inverse of [`feed_payload`]: `(recorded at, event)`.
pub(crate) fn parse_payload(payload: &str) -> Result<(u64, HistoryEvent), crate::StoreError> {
    let at = payload_time(payload)?;
    let json = payload.split_once('|').map_or("", |(_, j)| j);
    Ok((at, crate::error::decode("history feed entry", json)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_splits_over_the_hours_it_touches() {
        let h = AGGREGATE_MS;
        assert_eq!(player_ms_by_hour(10, 20), vec![(0, 10)]);
        assert_eq!(
            player_ms_by_hour(h - 100, 2 * h + 50),
            vec![(0, 100), (h, h), (2 * h, 50)]
        );
        assert_eq!(player_ms_by_hour(h, h), Vec::<(u64, u64)>::new());
        let total: u64 = player_ms_by_hour(123, 9 * h + 7).iter().map(|p| p.1).sum();
        assert_eq!(total, 9 * h + 7 - 123);
    }

    #[test]
    fn payloads_round_trip() {
        let t = Transition {
            server: "s".into(),
            from: None,
            to: crate::ServerState::Sleeping,
            reason: "a | b".into(),
            at_unix_ms: 1_700_000_000_123,
            duration_ms: None,
            epoch: 0,
        };
        let e = HistoryEvent::Transition(t);
        let p = feed_payload(&e, 1_700_000_000_456).unwrap();
        assert_eq!(parse_payload(&p).unwrap(), (1_700_000_000_456, e));
        assert!(parse_payload("garbage").is_err());
    }
}
