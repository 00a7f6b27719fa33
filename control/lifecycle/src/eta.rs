//! "Usually ready in ~38 s": the wait shown to players, learned from recent starts.
//!
//! The median of the last starts (or restores) is robust to one slow cold start; rounding
//! up to whole seconds keeps the promise conservative.

use std::time::Duration;

/// How many recent durations the estimate looks at.
pub const WINDOW: usize = 10;

/// The expected wait, or None before anything was measured.
pub fn estimate(recent: &[Duration]) -> Option<Duration> {
    if recent.is_empty() {
        return None;
    }
    let mut v: Vec<Duration> = recent.iter().rev().take(WINDOW).copied().collect();
    v.sort();
    let mid = v[v.len() / 2];
    Some(Duration::from_secs(
        mid.as_secs() + u64::from(mid.subsec_nanos() > 0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_recent_rounded_up() {
        assert_eq!(estimate(&[]), None);
        let s = |x: f64| Duration::from_secs_f64(x);
        assert_eq!(estimate(&[s(37.2)]), Some(Duration::from_secs(38)));
        assert_eq!(
            estimate(&[s(30.0), s(40.0), s(300.0)]),
            Some(Duration::from_secs(40))
        );
        // Only the last WINDOW starts count: an ancient slow start is forgotten.
        let mut v = vec![s(500.0); 5];
        v.extend(vec![s(20.0); WINDOW]);
        assert_eq!(estimate(&v), Some(Duration::from_secs(20)));
    }
}
