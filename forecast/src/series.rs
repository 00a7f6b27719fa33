//! Demand series: the hourly grid every model and metric works on, and the
//! conversion from usage records (what the lifecycle engine will emit) to
//! hourly active RAM per size tier.

/// A regular hourly series starting at `start_hour` (hours since the epoch, UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct HourlySeries {
    pub name: String,
    pub start_hour: i64,
    pub values: Vec<f64>,
}

impl HourlySeries {
    /// Hour (epoch hours) of index `i`.
    pub fn hour_at(&self, i: usize) -> i64 {
        self.start_hour + i as i64
    }
}

/// A minute-resolution concurrency trace, used by the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteTrace {
    pub name: String,
    /// Minutes since the epoch of the first value.
    pub start_minute: i64,
    pub values: Vec<f64>,
}

impl MinuteTrace {
    /// Hourly means, the series the forecasts are evaluated on.
    pub fn hourly_mean(&self) -> HourlySeries {
        self.hourly_by(|c| c.iter().sum::<f64>() / c.len() as f64)
    }

    /// Hourly peaks, the series capacity has to cover.
    pub fn hourly_max(&self) -> HourlySeries {
        self.hourly_by(|c| c.iter().copied().fold(0.0, f64::max))
    }

    fn hourly_by(&self, f: impl Fn(&[f64]) -> f64) -> HourlySeries {
        // Align to whole hours so hour-of-day features mean the same thing everywhere.
        let lead = (60 - self.start_minute.rem_euclid(60)) % 60;
        let lead = (lead as usize).min(self.values.len());
        let values = self.values[lead..].chunks(60).map(f).collect();
        HourlySeries {
            name: self.name.clone(),
            start_hour: (self.start_minute + lead as i64).div_euclid(60),
            values,
        }
    }
}

/// Replaces NaN entries by linear interpolation between their neighbours;
/// leading and trailing gaps take the nearest known value. Returns how many
/// values were filled. All-missing input becomes zeros.
pub fn interpolate_missing(values: &mut [f64]) -> usize {
    let known: Vec<usize> = (0..values.len())
        .filter(|&i| values[i].is_finite())
        .collect();
    let filled = values.len() - known.len();
    if known.is_empty() {
        values.iter_mut().for_each(|v| *v = 0.0);
        return filled;
    }
    let (first, last) = (known[0], known[known.len() - 1]);
    let (vf, vl) = (values[first], values[last]);
    values[..first].iter_mut().for_each(|v| *v = vf);
    values[last + 1..].iter_mut().for_each(|v| *v = vl);
    for w in known.windows(2) {
        let (a, b) = (w[0], w[1]);
        let (va, vb) = (values[a], values[b]);
        for (k, v) in values[a + 1..b].iter_mut().enumerate() {
            let t = (k + 1) as f64 / (b - a) as f64;
            *v = va + t * (vb - va);
        }
    }
    filled
}

/// One stretch of a server being active, as the lifecycle engine records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageRecord {
    pub server_id: u64,
    pub memory_gb: u32,
    /// Unix seconds, inclusive.
    pub start: i64,
    /// Unix seconds, exclusive.
    pub end: i64,
}

/// Server size tiers; capacity is bought per tier because node shapes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// 1–4 GB
    Small,
    /// 5–8 GB
    Medium,
    /// 9 GB and more
    Large,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Small, Tier::Medium, Tier::Large];

    pub fn of(memory_gb: u32) -> Tier {
        match memory_gb {
            0..=4 => Tier::Small,
            5..=8 => Tier::Medium,
            _ => Tier::Large,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::Small => "small",
            Tier::Medium => "medium",
            Tier::Large => "large",
        }
    }
}

/// Hourly mean active RAM (GB) per tier over `[from_hour, to_hour)`:
/// each record contributes memory × the fraction of each hour it overlaps.
pub fn tier_series(records: &[UsageRecord], from_hour: i64, to_hour: i64) -> Vec<HourlySeries> {
    let len = (to_hour - from_hour).max(0) as usize;
    let mut out: Vec<HourlySeries> = Tier::ALL
        .iter()
        .map(|t| HourlySeries {
            name: format!("ram-{}", t.name()),
            start_hour: from_hour,
            values: vec![0.0; len],
        })
        .collect();
    for r in records {
        if r.end <= r.start {
            continue;
        }
        let idx = Tier::ALL
            .iter()
            .position(|t| *t == Tier::of(r.memory_gb))
            .unwrap_or(0);
        let first = r.start.div_euclid(3600).max(from_hour);
        let last = (r.end - 1).div_euclid(3600).min(to_hour - 1);
        for h in first..=last {
            let lo = r.start.max(h * 3600);
            let hi = r.end.min((h + 1) * 3600);
            if hi > lo {
                out[idx].values[(h - from_hour) as usize] +=
                    f64::from(r.memory_gb) * (hi - lo) as f64 / 3600.0;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_fills_gaps() {
        let mut v = vec![f64::NAN, 2.0, f64::NAN, f64::NAN, 5.0, f64::NAN];
        assert_eq!(interpolate_missing(&mut v), 4);
        assert_eq!(v, vec![2.0, 2.0, 3.0, 4.0, 5.0, 5.0]);
        let mut none = vec![f64::NAN; 3];
        interpolate_missing(&mut none);
        assert_eq!(none, vec![0.0; 3]);
    }

    #[test]
    fn tiers_split_and_prorate() {
        let h0 = 1000;
        let recs = [
            // 4 GB for 90 minutes starting at h0:30
            UsageRecord {
                server_id: 1,
                memory_gb: 4,
                start: h0 * 3600 + 1800,
                end: h0 * 3600 + 1800 + 5400,
            },
            UsageRecord {
                server_id: 2,
                memory_gb: 8,
                start: h0 * 3600,
                end: (h0 + 1) * 3600,
            },
            UsageRecord {
                server_id: 3,
                memory_gb: 16,
                start: (h0 + 2) * 3600,
                end: (h0 + 9) * 3600,
            },
        ];
        let s = tier_series(&recs, h0, h0 + 3);
        assert_eq!(s[0].values, vec![2.0, 4.0, 0.0]);
        assert_eq!(s[1].values, vec![8.0, 0.0, 0.0]);
        assert_eq!(s[2].values, vec![0.0, 0.0, 16.0]);
        assert_eq!(Tier::of(5), Tier::Medium);
        assert_eq!(Tier::of(9), Tier::Large);
    }

    #[test]
    fn minute_trace_aggregates_on_hour_boundaries() {
        // starts at minute 30 of an hour: the first partial hour is dropped
        let t = MinuteTrace {
            name: "t".into(),
            start_minute: 60 * 10 + 30,
            values: (0..150).map(|i| if i < 30 { 9.0 } else { 1.0 }).collect(),
        };
        let m = t.hourly_mean();
        assert_eq!(m.start_hour, 11);
        assert_eq!(m.values, vec![1.0, 1.0]);
        assert_eq!(t.hourly_max().values, vec![1.0, 1.0]);
    }
}
