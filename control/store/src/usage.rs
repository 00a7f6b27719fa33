//! Usage for billing and the forecast, derived from the audit trail instead of
//! being counted separately, so usage can never disagree with the recorded
//! history. Pure, so both stores share it and it is tested without a store. Player time of
//! sessions removed by the retention comes from hourly aggregates (see `history`).

use crate::history::AGGREGATE_MS;
use crate::model::{ServerState, SessionRecord, Transition};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Memory held by a running (or starting, stopping, swapping) server.
    pub active_gb_seconds: f64,
    /// A stopped server whose data lives on the node (sleeping, and while it
    /// is being archived or restored, since the node copy exists then too).
    pub sleeping_gb_hours: f64,
    /// Archive bytes kept in archive storage while archived.
    pub archived_byte_hours: f64,
    /// Player time on the server, summed over players.
    pub player_minutes: f64,
}

enum Billing {
    Active,
    Sleeping,
    Archived,
    Nothing,
}

fn billing(state: ServerState) -> Billing {
    match state {
        ServerState::Starting
        | ServerState::Active
        | ServerState::Stopping
        | ServerState::Swapping => Billing::Active,
        ServerState::Sleeping | ServerState::Archiving | ServerState::Restoring => {
            Billing::Sleeping
        }
        ServerState::Archived => Billing::Archived,
        // A failed server is the operator's problem, not the customer's bill.
        ServerState::Failed => Billing::Nothing,
    }
}

/// Usage of one server in `[from_ms, to_ms)`.
///
/// `transitions` must be that server's transitions (any order; those before
/// `from_ms` tell the state the window starts in — time before the first
/// known transition is not billed). Open sessions count until `to_ms`.
/// `archived_bytes` is the size of the server's archive. `aggregates` are `(hour start,
/// player ms)` of pruned sessions; an hour partly inside the window counts in proportion.
#[allow(clippy::too_many_arguments)]
pub fn compute_usage(
    transitions: &[Transition],
    sessions: &[SessionRecord],
    aggregates: &[(u64, u64)],
    from_ms: u64,
    to_ms: u64,
    memory_gb: f64,
    archived_bytes: u64,
) -> Usage {
    let mut usage = Usage::default();
    if to_ms <= from_ms {
        return usage;
    }
    let mut sorted: Vec<&Transition> = transitions.iter().collect();
    sorted.sort_by_key(|t| (t.at_unix_ms, t.epoch));

    let mut bill = |state: Option<ServerState>, start: u64, end: u64| {
        let (start, end) = (start.max(from_ms), end.min(to_ms));
        let Some(state) = state else { return };
        if end <= start {
            return;
        }
        let secs = (end - start) as f64 / 1000.0;
        match billing(state) {
            Billing::Active => usage.active_gb_seconds += secs * memory_gb,
            Billing::Sleeping => usage.sleeping_gb_hours += secs / 3600.0 * memory_gb,
            Billing::Archived => usage.archived_byte_hours += secs / 3600.0 * archived_bytes as f64,
            Billing::Nothing => {}
        }
    };
    let mut state = None;
    let mut since = 0u64;
    for t in sorted {
        bill(state, since, t.at_unix_ms);
        state = Some(t.to);
        since = t.at_unix_ms;
    }
    bill(state, since, to_ms);

    for s in sessions {
        let start = s.start_unix_ms.max(from_ms);
        let end = s.end_unix_ms.unwrap_or(to_ms).min(to_ms);
        if end > start {
            usage.player_minutes += (end - start) as f64 / 60_000.0;
        }
    }
    for &(hour, ms) in aggregates {
        let start = hour.max(from_ms);
        let end = hour.saturating_add(AGGREGATE_MS).min(to_ms);
        if end > start {
            let share = (end - start) as f64 / AGGREGATE_MS as f64;
            usage.player_minutes += ms as f64 * share / 60_000.0;
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(from: Option<ServerState>, to: ServerState, at: u64, epoch: u64) -> Transition {
        Transition {
            server: "s".into(),
            from,
            to,
            reason: String::new(),
            at_unix_ms: at,
            duration_ms: None,
            epoch,
        }
    }

    fn session(start: u64, end: Option<u64>) -> SessionRecord {
        SessionRecord {
            id: format!("{start}"),
            server: "s".into(),
            player: "p".into(),
            player_uuid: None,
            appliance: "a".into(),
            start_unix_ms: start,
            end_unix_ms: end,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    use ServerState::*;

    #[test]
    fn full_cycle_inside_window() {
        let tr = vec![
            t(None, Sleeping, 0, 0),
            t(Some(Sleeping), Starting, 10_000, 1),
            t(Some(Starting), Active, 40_000, 2),
            t(Some(Active), Stopping, 100_000, 3),
            t(Some(Stopping), Sleeping, 110_000, 4),
        ];
        // Window [0, 3_710_000): active 10s..110s = 100 s; sleeping 10 s + 3600 s.
        let u = compute_usage(&tr, &[], &[], 0, 3_710_000, 4.0, 0);
        assert!(close(u.active_gb_seconds, 400.0), "{u:?}");
        assert!(close(u.sleeping_gb_hours, 3610.0 / 3600.0 * 4.0), "{u:?}");
        assert!(close(u.archived_byte_hours, 0.0));
        assert!(close(u.player_minutes, 0.0));
    }

    #[test]
    fn state_before_window_carries_in_and_window_clips() {
        // Active since long before the window, stops in the middle of it.
        let tr = vec![
            t(None, Active, 1_000, 0),
            t(Some(Active), Sleeping, 70_000, 1),
        ];
        let u = compute_usage(&tr, &[], &[], 10_000, 100_000, 2.0, 0);
        assert!(close(u.active_gb_seconds, 60.0 * 2.0), "{u:?}");
        assert!(close(u.sleeping_gb_hours, 30.0 / 3600.0 * 2.0), "{u:?}");
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let mut tr = vec![
            t(None, Sleeping, 0, 0),
            t(Some(Sleeping), Active, 50_000, 1),
            t(Some(Active), Sleeping, 80_000, 2),
        ];
        let a = compute_usage(&tr, &[], &[], 0, 100_000, 1.0, 0);
        tr.reverse();
        let b = compute_usage(&tr, &[], &[], 0, 100_000, 1.0, 0);
        assert_eq!(a, b);
        assert!(close(a.active_gb_seconds, 30.0));
    }

    #[test]
    fn archived_time_bills_bytes_and_failed_bills_nothing() {
        let tr = vec![
            t(None, Archived, 0, 0),
            t(Some(Archived), Failed, 3_600_000, 1),
        ];
        let u = compute_usage(&tr, &[], &[], 0, 7_200_000, 8.0, 1_000);
        assert!(close(u.archived_byte_hours, 1_000.0), "{u:?}");
        assert!(close(u.active_gb_seconds, 0.0));
        assert!(close(u.sleeping_gb_hours, 0.0));
    }

    #[test]
    fn no_history_or_empty_window_is_zero() {
        let u = compute_usage(&[], &[session(0, Some(60_000))], &[], 0, 60_000, 4.0, 0);
        assert!(close(u.active_gb_seconds, 0.0));
        assert!(close(u.player_minutes, 1.0));
        let tr = vec![t(None, Active, 0, 0)];
        assert_eq!(
            compute_usage(&tr, &[], &[], 500, 500, 4.0, 0),
            Usage::default()
        );
        assert_eq!(
            compute_usage(&tr, &[], &[], 600, 500, 4.0, 0),
            Usage::default()
        );
        // Time before the first transition is unknown and not billed.
        let late = vec![t(None, Active, 50_000, 0)];
        let u = compute_usage(&late, &[], &[], 0, 60_000, 1.0, 0);
        assert!(close(u.active_gb_seconds, 10.0), "{u:?}");
    }

    #[test]
    fn sessions_are_clipped_and_open_ones_count_to_window_end() {
        let sessions = vec![
            session(0, Some(120_000)),       // 1 min inside [60s, 240s)
            session(90_000, None),           // open: 2.5 min to window end
            session(300_000, Some(400_000)), // after the window
            session(0, Some(30_000)),        // before the window
        ];
        let u = compute_usage(&[], &sessions, &[], 60_000, 240_000, 1.0, 0);
        assert!(close(u.player_minutes, 1.0 + 2.5), "{u:?}");
    }

    #[test]
    fn aggregates_count_whole_hours_and_shares_of_partial_ones() {
        let h = AGGREGATE_MS;
        // Two hours of pruned player time: 60 min in hour 0, 30 min in hour 1.
        let agg = [(0, 3_600_000), (h, 1_800_000)];
        let u = compute_usage(&[], &[], &agg, 0, 2 * h, 1.0, 0);
        assert!(close(u.player_minutes, 90.0), "{u:?}");
        // Half of hour 1 inside the window: half its minutes.
        let u = compute_usage(&[], &[], &agg, h, h + h / 2, 1.0, 0);
        assert!(close(u.player_minutes, 15.0), "{u:?}");
        // Outside the window: nothing. Raw sessions add up with aggregates.
        let u = compute_usage(&[], &[], &agg, 2 * h, 3 * h, 1.0, 0);
        assert!(close(u.player_minutes, 0.0), "{u:?}");
        let s = [session(2 * h, Some(2 * h + 60_000))];
        let u = compute_usage(&[], &s, &agg, 0, 3 * h, 1.0, 0);
        assert!(close(u.player_minutes, 91.0), "{u:?}");
    }
}
