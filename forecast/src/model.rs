//! Forecasting methods: the direct multi-horizon linear model fitted with
//! linfa on log1p demand, and the seasonal-naive baselines that it must beat
//! and that the fallback chain may pick instead.

use linfa::traits::Fit;
use linfa::Dataset;
use linfa_linear::LinearRegression;
use ndarray::{Array1, ArrayView2};

use crate::calendar::Calendar;
use crate::error::{Error, Result};
use crate::features::{self, Standardizer, N_FEATURES};

/// Seasonal-naive forecast: each hour repeats the last observed value `season` hours earlier.
pub fn seasonal_naive(history: &[f64], season: usize, horizon: usize) -> Vec<f64> {
    let n = history.len();
    (1..=horizon)
        .map(|h| {
            if n == 0 {
                return 0.0;
            }
            // steps of `season` back until we land inside the history
            let back = season * h.div_ceil(season);
            history
                .get((n + h).wrapping_sub(back + 1))
                .copied()
                .unwrap_or(history[n - 1])
        })
        .collect()
}

/// Hyper-parameters of the linear model.
#[derive(Debug, Clone)]
pub struct LinearConfig {
    /// Ridge strength relative to the number of rows (on standardized features).
    pub ridge: f64,
    /// Only the most recent origins are used, so regime changes wash out.
    pub max_train_origins: usize,
    /// Fewer training rows than this and the model declines to fit.
    pub min_train_origins: usize,
    /// Hours of history the profile model is fitted on.
    pub profile_window: usize,
    pub profile_ridge: f64,
}

impl Default for LinearConfig {
    fn default() -> Self {
        LinearConfig {
            ridge: 0.05,
            max_train_origins: 24 * 14,
            min_train_origins: 72,
            profile_window: 24 * 21,
            profile_ridge: 0.01,
        }
    }
}

/// Fits one linear model per horizon 1..=`horizon` on `history` (which starts
/// at epoch hour `start_hour`) and returns the forecasts for the `horizon`
/// hours after it.
pub fn linear_forecast(
    history: &[f64],
    start_hour: i64,
    horizon: usize,
    cal: &Calendar,
    cfg: &LinearConfig,
) -> Result<Vec<f64>> {
    let ls = features::LogSeries::new(history);
    let l = &ls.l;
    let n = l.len();
    if n == 0 {
        return Err(Error::NotEnoughData("empty history".into()));
    }
    let origin = n - 1;
    let mut out = Vec::with_capacity(horizon);
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for h in 1..=horizon {
        let lo = features::min_origin(h);
        if origin < lo + cfg.min_train_origins + h {
            return Err(Error::NotEnoughData(format!(
                "{n} hours of history is too short for horizon {h}"
            )));
        }
        let last_train = origin - h;
        let first = lo.max(last_train.saturating_sub(cfg.max_train_origins - 1));
        rows.clear();
        targets.clear();
        for t in first..=last_train {
            features::row(&ls, t, h, start_hour + (t + h) as i64, cal, &mut rows);
            // learn the deviation from the same hour of the last observed day,
            // so the ridge shrinks towards a seasonal-naive forecast
            targets.push(l[t + h] - l[t + h - features::day_lag(h)]);
        }
        let std = Standardizer::fit(&rows, N_FEATURES);
        std.apply(&mut rows);
        let mut live = Vec::with_capacity(N_FEATURES);
        features::row(
            &ls,
            origin,
            h,
            start_hour + (origin + h) as i64,
            cal,
            &mut live,
        );
        std.apply(&mut live);
        let delta = fit_ridge(&rows, &targets, cfg.ridge, N_FEATURES)?(&live);
        let base = l[origin + h - features::day_lag(h)];
        out.push((base + delta).exp_m1().max(0.0));
    }
    Ok(out)
}

/// A Prophet-like smooth profile: log1p demand regressed on a linear trend,
/// daily and weekly Fourier terms and the calendar flags over the recent
/// window, one fit for all horizons. It averages noise away where lagged
/// values carry it forward.
pub fn profile_forecast(
    history: &[f64],
    start_hour: i64,
    horizon: usize,
    cal: &Calendar,
    cfg: &LinearConfig,
) -> Result<Vec<f64>> {
    let n = history.len();
    let window = cfg.profile_window.min(n);
    if window < 24 * 7 {
        return Err(Error::NotEnoughData(format!(
            "{n} hours is too short for a weekly profile"
        )));
    }
    let first = n - window;
    let mut rows = Vec::with_capacity(window * PROFILE_FEATURES);
    let mut targets = Vec::with_capacity(window);
    for (k, v) in history[first..].iter().enumerate() {
        profile_row(k, window, start_hour + (first + k) as i64, cal, &mut rows);
        targets.push(v.max(0.0).ln_1p());
    }
    let std = Standardizer::fit(&rows, PROFILE_FEATURES);
    std.apply(&mut rows);
    let model = fit_ridge(&rows, &targets, cfg.profile_ridge, PROFILE_FEATURES)?;
    let mut live = Vec::with_capacity(PROFILE_FEATURES);
    Ok((n..n + horizon)
        .map(|i| {
            live.clear();
            profile_row(i - first, window, start_hour + i as i64, cal, &mut live);
            std.apply(&mut live);
            model(&live).exp_m1().max(0.0)
        })
        .collect())
}

/// Trend changepoints, spread over the first 80 % of the window as in
/// Prophet: the trend may bend there, and the last slope is extrapolated.
const CHANGEPOINTS: usize = 12;

const PROFILE_FEATURES: usize = 1 + CHANGEPOINTS + 8 + 6 + 8 + 2;

fn profile_row(i: usize, window: usize, hour: i64, cal: &Calendar, out: &mut Vec<f64>) {
    use std::f64::consts::PI;
    let t = i as f64 / window as f64;
    out.push(t);
    for k in 1..=CHANGEPOINTS {
        let c = 0.8 * k as f64 / (CHANGEPOINTS + 1) as f64;
        out.push((t - c).max(0.0));
    }
    let hod = hour.rem_euclid(24) as f64;
    let how = hour.rem_euclid(168) as f64;
    // epoch day 0 was a Thursday: days 2 and 3 of the week are Saturday and Sunday
    let weekend = if matches!(hour.div_euclid(24).rem_euclid(7), 2 | 3) {
        1.0
    } else {
        -1.0
    };
    for k in 1..=4 {
        let a = 2.0 * PI * k as f64 * hod / 24.0;
        out.push(a.sin());
        out.push(a.cos());
    }
    for k in 1..=3 {
        let a = 2.0 * PI * k as f64 * how / 168.0;
        out.push(a.sin());
        out.push(a.cos());
    }
    // weekend days have their own daily shape
    for k in 1..=4 {
        let a = 2.0 * PI * k as f64 * hod / 24.0;
        out.push(weekend * a.sin());
        out.push(weekend * a.cos());
    }
    out.push(f64::from(u8::from(cal.is_holiday(hour))));
    out.push(f64::from(u8::from(cal.is_event(hour))));
}

/// Ridge regression solved by linfa's least squares on the normal
/// equations (XᵀX + λn·I) w = Xᵀy: the p×p system is much cheaper to factor
/// than the n×p design, and centring the target removes the intercept.
fn fit_ridge(
    rows: &[f64],
    targets: &[f64],
    ridge: f64,
    p: usize,
) -> Result<impl Fn(&[f64]) -> f64> {
    let n = targets.len();
    let y_mean = targets.iter().sum::<f64>() / n.max(1) as f64;
    let x = ArrayView2::from_shape((n, p), rows).map_err(|e| Error::Model(e.to_string()))?;
    let yc = Array1::from_iter(targets.iter().map(|t| t - y_mean));
    // XᵀX through ndarray's blocked matrix product: the hot spot of every fit
    let mut gram = x.t().dot(&x);
    for i in 0..p {
        gram[[i, i]] += ridge * n as f64;
    }
    let xty = x.t().dot(&yc);
    let model = LinearRegression::new()
        .with_intercept(false)
        .fit(&Dataset::new(gram, xty))
        .map_err(|e| Error::Model(e.to_string()))?;
    let w: Vec<f64> = model.params().to_vec();
    if w.iter().any(|v| !v.is_finite()) {
        return Err(Error::Model("non-finite coefficients".into()));
    }
    Ok(move |r: &[f64]| y_mean + r.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasonal_naive_repeats() {
        let h: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(seasonal_naive(&h, 3, 5), vec![7.0, 8.0, 9.0, 7.0, 8.0]);
        assert_eq!(seasonal_naive(&h, 24, 2), vec![9.0, 9.0]);
    }

    #[test]
    fn linear_learns_a_weekly_pattern() {
        // weekly × daily pattern with a mild trend; the model should be close
        // the 48 h forecast crosses into a weekend, where seasonal-naive 24 fails
        let n = 24 * 26;
        let f = |i: usize| {
            let d = (2.0 * std::f64::consts::PI * (i % 24) as f64 / 24.0).sin();
            let w = if (i / 24) % 7 >= 5 { 1.5 } else { 1.0 };
            1000.0 * w * (1.5 + d) * (1.0 + i as f64 / 5000.0)
        };
        let hist: Vec<f64> = (0..n).map(f).collect();
        let cal = Calendar::german();
        let fc = linear_forecast(&hist, 0, 48, &cal, &LinearConfig::default()).unwrap();
        let actual: Vec<f64> = (n..n + 48).map(f).collect();
        let err = crate::metrics::mae(&actual, &fc);
        let sn24 = crate::metrics::mae(&actual, &seasonal_naive(&hist, 24, 48));
        let sn168 = crate::metrics::mae(&actual, &seasonal_naive(&hist, 168, 48));
        assert!(err < sn24, "linear {err} vs snaive24 {sn24}");
        assert!(err < 3.0 * sn168 + 1.0, "linear {err} vs snaive168 {sn168}");
        assert!(linear_forecast(&hist[..200], 0, 48, &cal, &LinearConfig::default()).is_err());
    }
}
