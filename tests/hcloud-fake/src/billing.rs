//! Hetzner's hourly billing, so a capacity test can read what its decisions cost: every
//! started hour a server exists is billed, at most the type's monthly price. The hour can
//! be shortened for time-scaled tests.

use std::time::Duration;

/// Billed hours for a server that existed from `created_ms` to `end_ms` (unix ms; now, or
/// its deletion): every started hour counts, so a server deleted a second after creation
/// costs one hour. Whole milliseconds, so a test can redo the sum from the state's
/// `created_ms` and `deleted_ms` and get the same number.
pub fn billed_hours(created_ms: u64, end_ms: u64, hour: Duration) -> u64 {
    let hour_ms = (hour.as_millis() as u64).max(1);
    end_ms.saturating_sub(created_ms) / hour_ms + 1
}

/// Net euros for `hours` at `hourly`, capped at the `monthly` price.
pub fn cost(hours: u64, hourly: f64, monthly: f64) -> f64 {
    let c = hours as f64 * hourly;
    if monthly > 0.0 {
        c.min(monthly)
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_started_hour_counts() {
        let t = 1_700_000_000_000;
        let h = Duration::from_secs(3600);
        assert_eq!(billed_hours(t, t, h), 1);
        assert_eq!(billed_hours(t, t + 3_599_999, h), 1);
        assert_eq!(billed_hours(t, t + 3_600_000, h), 2);
        assert_eq!(billed_hours(t, t + 2500, Duration::from_secs(1)), 3);
        // a clock step back never bills less than the first hour
        assert_eq!(billed_hours(t, t - 5, h), 1);
        assert!((cost(3, 0.026, 16.4) - 0.078).abs() < 1e-12);
        assert!((cost(100_000, 0.026, 16.4) - 16.4).abs() < 1e-12);
    }
}
