//! The fleet's demand history: the peak RAM in use (and waiting) in each hour, and the
//! boot-to-ready times of the nodes it bought. Kept as one document in the store, so a new
//! leader plans from the same past as the old one; bounded to eight weeks.

use serde::{Deserialize, Serialize};

use crate::CapacityError;

/// Hours kept: eight weeks, enough for the weekly season and the validation windows.
pub const KEEP_HOURS: usize = 8 * 168;
/// Boot times kept.
const KEEP_BOOTS: usize = 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    /// The hour (unix time ÷ the configured hour) of `gb[0]`.
    pub first_hour: i64,
    /// Peak GB in use or waiting per hour; the last is the hour under way.
    pub gb: Vec<f64>,
    /// Observed create-to-ready times of bought nodes, ms, newest last.
    #[serde(default)]
    pub boots_ms: Vec<u64>,
    /// Bought nodes already timed (their names), so each is counted once.
    #[serde(default)]
    pub timed: Vec<String>,
}

impl History {
    /// Starts from `seed` (one GB figure per line, oldest first, ending the hour before
    /// `hour`; blank lines and `#` comments skipped).
    pub fn seeded(seed: &str, hour: i64) -> Result<Self, CapacityError> {
        let mut gb = Vec::new();
        for (n, line) in seed.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // "hour,gb" or "gb": the last field.
            let field = line.rsplit(',').next().unwrap_or(line).trim();
            match field.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => gb.push(v),
                _ => {
                    return Err(CapacityError::Config(format!(
                        "capacity.seed line {}: `{line}` is not a GB figure ≥ 0",
                        n + 1
                    )))
                }
            }
        }
        let keep = gb.len().saturating_sub(KEEP_HOURS - 1);
        gb.drain(..keep);
        let mut h = History {
            first_hour: hour - gb.len() as i64,
            gb,
            ..Default::default()
        };
        h.observe(hour, 0.0);
        Ok(h)
    }

    /// Records `gb` in use at `hour`: hours missed since the last sample repeat it (the
    /// controller was down or the leader changed), older ones fall off.
    pub fn observe(&mut self, hour: i64, gb: f64) {
        if self.gb.is_empty() {
            self.first_hour = hour;
            self.gb.push(gb);
            return;
        }
        let last = self.first_hour + self.gb.len() as i64 - 1;
        if hour < last {
            return; // a clock step back: keep what we have
        }
        if hour > last {
            let fill = self.gb.last().copied().unwrap_or(0.0);
            let gap = usize::try_from(hour - last)
                .unwrap_or(usize::MAX)
                .min(KEEP_HOURS);
            for _ in 1..gap {
                self.gb.push(fill);
            }
            self.gb.push(gb);
        } else if let Some(v) = self.gb.last_mut() {
            *v = v.max(gb);
        }
        if self.gb.len() > KEEP_HOURS {
            let cut = self.gb.len() - KEEP_HOURS;
            self.gb.drain(..cut);
            self.first_hour += cut as i64;
        }
        self.first_hour = hour - self.gb.len() as i64 + 1;
    }

    /// Complete hours (all but the one under way).
    pub fn complete(&self) -> &[f64] {
        &self.gb[..self.gb.len().saturating_sub(1)]
    }

    /// Records a bought node's create-to-ready time once.
    pub fn timed_boot(&mut self, node: &str, ms: u64) {
        if self.timed.iter().any(|n| n == node) {
            return;
        }
        self.timed.push(node.to_string());
        if self.timed.len() > 4 * KEEP_BOOTS {
            self.timed.remove(0);
        }
        self.boots_ms.push(ms);
        if self.boots_ms.len() > KEEP_BOOTS {
            self.boots_ms.remove(0);
        }
    }

    /// The lead time learned from this fleet's boots: the slowest of the recent ones
    /// (a node bought late is a player kept waiting), or None before any.
    pub fn learned_lead_ms(&self) -> Option<u64> {
        self.boots_ms.iter().copied().max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_fill_gaps_keep_peaks_and_stay_bounded() {
        let mut h = History::default();
        h.observe(10, 2.0);
        h.observe(10, 5.0);
        h.observe(10, 3.0);
        h.observe(13, 1.0);
        assert_eq!(h.gb, vec![5.0, 5.0, 5.0, 1.0]);
        assert_eq!(h.first_hour, 10);
        assert_eq!(h.complete(), &[5.0, 5.0, 5.0]);
        h.observe(13 + KEEP_HOURS as i64 * 2, 4.0);
        assert_eq!(h.gb.len(), KEEP_HOURS);
        assert_eq!(
            h.first_hour + h.gb.len() as i64 - 1,
            13 + KEEP_HOURS as i64 * 2
        );
    }

    #[test]
    fn a_seed_ends_the_hour_before_now_and_bad_lines_are_refused() {
        let h = History::seeded("# gb\n1\n0,2.5\n\n3\n", 100).unwrap();
        assert_eq!(h.first_hour, 97);
        assert_eq!(h.gb, vec![1.0, 2.5, 3.0, 0.0]);
        let e = History::seeded("1\nlots\n", 100).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn the_lead_time_is_the_slowest_recent_boot() {
        let mut h = History::default();
        assert_eq!(h.learned_lead_ms(), None);
        h.timed_boot("a", 3000);
        h.timed_boot("a", 9000);
        h.timed_boot("b", 5000);
        assert_eq!(h.learned_lead_ms(), Some(5000));
    }
}
