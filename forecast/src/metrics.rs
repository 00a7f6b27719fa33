//! Forecast accuracy measures of the evaluation protocol (README of
//! shared/data): MASE, sMAPE, pinball loss, coverage, geometric mean.

/// Mean absolute error.
pub fn mae(actual: &[f64], forecast: &[f64]) -> f64 {
    let n = actual.len().min(forecast.len());
    if n == 0 {
        return f64::NAN;
    }
    actual
        .iter()
        .zip(forecast)
        .map(|(a, f)| (a - f).abs())
        .sum::<f64>()
        / n as f64
}

/// In-sample MAE of the seasonal-naive forecast with period `season`: the
/// MASE denominator.
pub fn seasonal_naive_mae(train: &[f64], season: usize) -> f64 {
    if train.len() <= season {
        return f64::NAN;
    }
    let n = train.len() - season;
    (season..train.len())
        .map(|i| (train[i] - train[i - season]).abs())
        .sum::<f64>()
        / n as f64
}

/// Mean absolute scaled error.
pub fn mase(actual: &[f64], forecast: &[f64], scale: f64) -> f64 {
    mae(actual, forecast) / scale
}

/// Symmetric MAPE in percent; a pair of zeros counts as a perfect forecast.
pub fn smape(actual: &[f64], forecast: &[f64]) -> f64 {
    let n = actual.len().min(forecast.len());
    if n == 0 {
        return f64::NAN;
    }
    let s: f64 = actual
        .iter()
        .zip(forecast)
        .map(|(a, f)| {
            let d = a.abs() + f.abs();
            if d == 0.0 {
                0.0
            } else {
                2.0 * (a - f).abs() / d
            }
        })
        .sum();
    100.0 * s / n as f64
}

/// Mean pinball (quantile) loss of the `tau` quantile forecast.
pub fn pinball(actual: &[f64], quantile: &[f64], tau: f64) -> f64 {
    let n = actual.len().min(quantile.len());
    if n == 0 {
        return f64::NAN;
    }
    actual
        .iter()
        .zip(quantile)
        .map(|(a, q)| {
            let d = a - q;
            if d >= 0.0 {
                tau * d
            } else {
                (tau - 1.0) * d
            }
        })
        .sum::<f64>()
        / n as f64
}

/// Share of actuals at or below the quantile forecast.
pub fn coverage(actual: &[f64], quantile: &[f64]) -> f64 {
    let n = actual.len().min(quantile.len());
    if n == 0 {
        return f64::NAN;
    }
    actual.iter().zip(quantile).filter(|(a, q)| a <= q).count() as f64 / n as f64
}

/// Geometric mean of positive finite values (others are skipped).
pub fn geometric_mean(values: &[f64]) -> f64 {
    let logs: Vec<f64> = values
        .iter()
        .filter(|v| v.is_finite() && **v > 0.0)
        .map(|v| v.ln())
        .collect();
    if logs.is_empty() {
        return f64::NAN;
    }
    (logs.iter().sum::<f64>() / logs.len() as f64).exp()
}

/// Empirical quantile with linear interpolation (type 7); NaN on empty input.
pub fn quantile(values: &[f64], tau: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = tau.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (pos - lo as f64) * (v[hi] - v[lo])
}

/// Quantile of weighted samples `(value, weight)`: the smallest value whose
/// cumulative weight reaches `tau` of the total; NaN on empty input.
pub fn weighted_quantile(samples: &[(f64, f64)], tau: f64) -> f64 {
    let mut v: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(x, w)| x.is_finite() && *w > 0.0)
        .collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = v.iter().map(|(_, w)| w).sum();
    let target = tau.clamp(0.0, 1.0) * total;
    let mut acc = 0.0;
    for (x, w) in &v {
        acc += w;
        if acc >= target {
            return *x;
        }
    }
    v[v.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mase_and_scale() {
        let train = [1.0, 2.0, 3.0, 2.0, 4.0, 6.0];
        // season 3: |2-1|,|4-2|,|6-3| -> mean 2
        assert_eq!(seasonal_naive_mae(&train, 3), 2.0);
        assert_eq!(mase(&[10.0, 10.0], &[12.0, 8.0], 2.0), 1.0);
        assert!(seasonal_naive_mae(&train, 6).is_nan());
    }

    #[test]
    fn smape_values() {
        assert_eq!(smape(&[100.0], &[100.0]), 0.0);
        assert!((smape(&[100.0], &[50.0]) - 100.0 * 2.0 * 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(smape(&[0.0], &[0.0]), 0.0);
        assert_eq!(smape(&[0.0], &[5.0]), 200.0);
    }

    #[test]
    fn pinball_and_coverage() {
        // under-forecast by 10 at tau 0.9 costs 9; over-forecast by 10 costs 1
        assert!((pinball(&[10.0], &[0.0], 0.9) - 9.0).abs() < 1e-12);
        assert!((pinball(&[0.0], &[10.0], 0.9) - 1.0).abs() < 1e-12);
        assert_eq!(coverage(&[1.0, 2.0, 3.0, 4.0], &[2.0, 2.0, 2.0, 5.0]), 0.75);
    }

    #[test]
    fn geomean_and_quantile() {
        assert!((geometric_mean(&[1.0, 4.0]) - 2.0).abs() < 1e-12);
        assert!((geometric_mean(&[2.0, f64::NAN, 8.0]) - 4.0).abs() < 1e-12);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[0.0, 10.0], 0.9), 9.0);
        let w = [(1.0, 1.0), (2.0, 1.0), (100.0, 0.1)];
        assert_eq!(weighted_quantile(&w, 0.9), 2.0);
        assert_eq!(weighted_quantile(&w, 0.99), 100.0);
        assert!(weighted_quantile(&[], 0.5).is_nan());
    }
}
