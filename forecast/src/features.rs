//! Regressors of the direct multi-horizon model. Every feature for a target
//! hour τ = t + h is computed only from values up to the origin t, so the
//! same function serves training rows and the live forecast row.

use std::f64::consts::PI;

use crate::calendar::Calendar;

/// Fourier harmonics of the daily and the weekly cycle.
pub const DAILY_HARMONICS: usize = 3;
pub const WEEKLY_HARMONICS: usize = 3;

/// Number of regressors produced by [`row`].
pub const N_FEATURES: usize = 7 + 2 * DAILY_HARMONICS + 2 * WEEKLY_HARMONICS + 2;

/// Column names, for debugging and docs.
pub fn names() -> Vec<String> {
    let mut v: Vec<String> = [
        "lag_day",
        "lag168",
        "mean_prev_day",
        "level",
        "mean_24h",
        "trend_week",
        "lag_day2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for k in 1..=DAILY_HARMONICS {
        v.push(format!("day_sin{k}"));
        v.push(format!("day_cos{k}"));
    }
    for k in 1..=WEEKLY_HARMONICS {
        v.push(format!("week_sin{k}"));
        v.push(format!("week_cos{k}"));
    }
    v.push("holiday".into());
    v.push("event".into());
    v
}

/// Whole days back to the most recent observed value at the target's hour of
/// day: lag 24 for h ≤ 24, lag 48 for h ≤ 48, …
pub fn day_lag(h: usize) -> usize {
    24 * h.div_ceil(24)
}

/// First origin index from which [`row`] has all its inputs for horizon `h`.
pub fn min_origin(h: usize) -> usize {
    let d = day_lag(h);
    // lag168, the mean over the 24 h before the day lag, and last week's mean
    (168usize.saturating_sub(h))
        .max((d + 24).saturating_sub(h))
        .max(168 + 23)
}

/// log1p demand with prefix sums, so window means cost O(1) per row.
pub struct LogSeries {
    pub l: Vec<f64>,
    prefix: Vec<f64>,
}

impl LogSeries {
    pub fn new(values: &[f64]) -> Self {
        let l: Vec<f64> = values.iter().map(|v| v.max(0.0).ln_1p()).collect();
        let mut prefix = Vec::with_capacity(l.len() + 1);
        prefix.push(0.0);
        let mut acc = 0.0;
        for v in &l {
            acc += v;
            prefix.push(acc);
        }
        LogSeries { l, prefix }
    }

    /// Mean of `l[a..b]`.
    fn mean(&self, a: usize, b: usize) -> f64 {
        (self.prefix[b] - self.prefix[a]) / (b - a).max(1) as f64
    }
}

/// Daily and weekly Fourier terms per hour of the week; 168 is a multiple of
/// 24, so the hour of the week determines both.
fn fourier(how: usize) -> &'static [f64] {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let w = 2 * (DAILY_HARMONICS + WEEKLY_HARMONICS);
    let t = TABLE.get_or_init(|| {
        let mut v = Vec::with_capacity(168 * w);
        for how in 0..168 {
            let hod = (how % 24) as f64;
            for k in 1..=DAILY_HARMONICS {
                let a = 2.0 * PI * k as f64 * hod / 24.0;
                v.push(a.sin());
                v.push(a.cos());
            }
            for k in 1..=WEEKLY_HARMONICS {
                let a = 2.0 * PI * k as f64 * how as f64 / 168.0;
                v.push(a.sin());
                v.push(a.cos());
            }
        }
        v
    });
    &t[how * w..(how + 1) * w]
}

/// Appends the regressors for target `t + h` to `out`; only values up to
/// the origin `t` are read.
pub fn row(
    s: &LogSeries,
    t: usize,
    h: usize,
    target_hour: i64,
    cal: &Calendar,
    out: &mut Vec<f64>,
) {
    let l = &s.l;
    let tau = t + h;
    let d = day_lag(h);
    let lag_day = l[tau - d];
    let lag168 = l[tau - 168.max(d)];
    let prev_day = s.mean(tau - d - 24, tau - d);
    let level = l[t];
    let mean_24h = s.mean(t - 23, t + 1);
    // change of the daily mean over the last week: carries launches and decays
    let week_ago = s.mean(t - 168 - 23, t - 168 + 1);
    out.extend_from_slice(&[
        lag_day,
        lag168,
        prev_day,
        level,
        mean_24h,
        mean_24h - week_ago,
        l[tau - d - 24],
    ]);
    out.extend_from_slice(fourier(target_hour.rem_euclid(168) as usize));
    out.push(f64::from(u8::from(cal.is_holiday(target_hour))));
    out.push(f64::from(u8::from(cal.is_event(target_hour))));
}

/// Column-wise z-scoring fitted on the training rows; constant columns map to
/// zero so a flag that never fired in training cannot blow up a forecast.
#[derive(Debug, Clone)]
pub struct Standardizer {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl Standardizer {
    /// `rows` is row-major with `width` columns.
    pub fn fit(rows: &[f64], width: usize) -> Self {
        let n = (rows.len() / width.max(1)).max(1) as f64;
        let mut sum = vec![0.0; width];
        let mut sq = vec![0.0; width];
        for r in rows.chunks(width) {
            for ((s, q), x) in sum.iter_mut().zip(sq.iter_mut()).zip(r) {
                *s += x;
                *q += x * x;
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let scale = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| {
                let v = (q / n - m * m).max(0.0);
                // relative threshold: a constant column only shows rounding noise
                if v > 1e-12 * (1.0 + m * m) {
                    1.0 / v.sqrt()
                } else {
                    0.0
                }
            })
            .collect();
        Standardizer { mean, scale }
    }

    pub fn apply(&self, rows: &mut [f64]) {
        let w = self.mean.len();
        for r in rows.chunks_mut(w) {
            for ((x, m), s) in r.iter_mut().zip(&self.mean).zip(&self.scale) {
                *x = (*x - m) * s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_and_windows() {
        let raw: Vec<f64> = (0..400).map(|i| (i as f64).exp_m1()).collect();
        let l = LogSeries::new(&raw);
        let cal = Calendar::german();
        let mut out = Vec::new();
        let t = 300;
        row(&l, t, 5, 0, &cal, &mut out);
        assert_eq!(out.len(), N_FEATURES);
        assert_eq!(names().len(), N_FEATURES);
        assert!((out[0] - (281.0)).abs() < 1e-6); // τ-24
        assert!((out[1] - (137.0)).abs() < 1e-6); // τ-168
        assert!((out[2] - ((257.0 + 280.0) / 2.0)).abs() < 1e-6); // mean over [τ-48, τ-24)
        assert!((out[3] - (300.0)).abs() < 1e-6);
        assert!((out[4] - ((277.0 + 300.0) / 2.0)).abs() < 1e-6);
        assert!((out[5] - (168.0)).abs() < 1e-6);
        out.clear();
        // h = 30 must not look past the origin: the day lag becomes 48
        row(&l, t, 30, 0, &cal, &mut out);
        assert!((out[0] - (282.0)).abs() < 1e-6);
        assert!(out[..7].iter().all(|v| *v <= t as f64 + 1e-6));
        assert_eq!(day_lag(24), 24);
        assert_eq!(day_lag(25), 48);
    }

    #[test]
    fn fourier_and_flags() {
        let l = LogSeries::new(&[0.0; 400]);
        let cal = Calendar::german();
        let mut a = Vec::new();
        let mut b = Vec::new();
        // hours 24 apart share daily terms; 168 apart share weekly terms too
        row(&l, 300, 1, 1000, &cal, &mut a);
        row(&l, 300, 1, 1024, &cal, &mut b);
        assert!((a[7] - b[7]).abs() < 1e-9 && (a[8] - b[8]).abs() < 1e-9);
        assert!((a[13] - b[13]).abs() > 1e-3);
        let xmas = crate::calendar::days_from_civil(2024, 12, 25) * 24;
        a.clear();
        row(&l, 300, 1, xmas, &cal, &mut a);
        assert_eq!(a[N_FEATURES - 2], 1.0);
        assert_eq!(a[N_FEATURES - 1], 0.0);
    }

    #[test]
    fn standardizer_zero_variance() {
        let mut rows = vec![1.0, 5.0, 3.0, 5.0];
        let s = Standardizer::fit(&rows, 2);
        s.apply(&mut rows);
        assert_eq!(rows, vec![-1.0, 0.0, 1.0, 0.0]);
    }
}
