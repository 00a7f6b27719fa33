//! The fallback chain: per series and per forecast origin, pick the method
//! that forecast the most recent days best, and attach upper quantiles from
//! that method's own rolling residuals. Forecasts per origin are cached, so
//! a rolling evaluation or a simulator that moves forward a day at a time
//! refits each origin only once.

use std::collections::HashMap;
use std::rc::Rc;

use crate::calendar::Calendar;
use crate::error::{Error, Result};
use crate::metrics;
use crate::model::{linear_forecast, profile_forecast, seasonal_naive, LinearConfig};

/// A forecasting method the chain can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Direct multi-horizon ridge regression on log1p demand (linfa).
    Linear,
    /// Mean of the linear model and seasonal-naive 168.
    Blend,
    /// Smooth trend + seasonality regression (Prophet-like).
    Profile,
    /// Mean of the linear model and the profile.
    BlendProfile,
    SeasonalNaive168,
    SeasonalNaive24,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Linear => "linear",
            Method::Blend => "blend",
            Method::Profile => "profile",
            Method::BlendProfile => "blendprof",
            Method::SeasonalNaive168 => "snaive168",
            Method::SeasonalNaive24 => "snaive24",
        }
    }
}

/// Settings of the chain.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// Hours ahead produced at each origin (direct models 1..=horizon).
    pub horizon: usize,
    /// Days before the origin on which candidates compete.
    pub validation_days: usize,
    /// Days before the origin whose forecast errors give the quantiles.
    pub residual_days: usize,
    /// Weight of each older day's residuals relative to the next newer day.
    pub residual_decay: f64,
    /// Planning quantile, e.g. 0.9.
    pub quantile: f64,
    /// The quantile stays below `point × max_band + 1`: residuals from
    /// before a level shift would otherwise buy days of idle capacity.
    pub max_band: f64,
    /// Candidates in order of preference (earlier wins ties).
    pub candidates: Vec<Method>,
    pub linear: LinearConfig,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            horizon: 48,
            validation_days: 7,
            residual_days: 7,
            residual_decay: 0.7,
            quantile: 0.9,
            max_band: 1.5,
            candidates: vec![
                Method::Linear,
                Method::Blend,
                Method::Profile,
                Method::BlendProfile,
                Method::SeasonalNaive168,
                Method::SeasonalNaive24,
            ],
            linear: LinearConfig::default(),
        }
    }
}

/// A forecast from one origin.
#[derive(Debug, Clone)]
pub struct Forecast {
    pub method: Method,
    /// Point forecasts for hours 1..=horizon after the origin.
    pub point: Vec<f64>,
    /// Forecasts of the planning quantile for the same hours.
    pub upper: Vec<f64>,
}

/// Per-series forecaster over a fixed value array; `forecast_at(n)` sees only `values[..n]`.
pub struct Forecaster<'a> {
    values: &'a [f64],
    start_hour: i64,
    cal: &'a Calendar,
    cfg: &'a ChainConfig,
    cache: HashMap<usize, Rc<Vec<Option<Vec<f64>>>>>,
}

impl<'a> Forecaster<'a> {
    pub fn new(
        values: &'a [f64],
        start_hour: i64,
        cal: &'a Calendar,
        cfg: &'a ChainConfig,
    ) -> Self {
        Forecaster {
            values,
            start_hour,
            cal,
            cfg,
            cache: HashMap::new(),
        }
    }

    /// Every candidate's forecast from origin `n` (None where it cannot run).
    fn candidates_at(&mut self, n: usize) -> Rc<Vec<Option<Vec<f64>>>> {
        if let Some(c) = self.cache.get(&n) {
            return Rc::clone(c);
        }
        let hist = &self.values[..n.min(self.values.len())];
        let hz = self.cfg.horizon;
        let needs_linear = self
            .cfg
            .candidates
            .iter()
            .any(|m| matches!(m, Method::Linear | Method::Blend | Method::BlendProfile));
        let needs_profile = self
            .cfg
            .candidates
            .iter()
            .any(|m| matches!(m, Method::Profile | Method::BlendProfile));
        let profile = if needs_profile {
            profile_forecast(hist, self.start_hour, hz, self.cal, &self.cfg.linear).ok()
        } else {
            None
        };
        let linear = if needs_linear {
            linear_forecast(hist, self.start_hour, hz, self.cal, &self.cfg.linear).ok()
        } else {
            None
        };
        let sn168 = (hist.len() >= 168).then(|| seasonal_naive(hist, 168, hz));
        let sn24 = (hist.len() >= 24).then(|| seasonal_naive(hist, 24, hz));
        // a model may extrapolate a launch or a decay too far; no forecast
        // beyond twice the largest value seen in the last two weeks
        let cap = 2.0
            * hist[hist.len().saturating_sub(336)..]
                .iter()
                .copied()
                .fold(0.0, f64::max);
        let clamp =
            |f: Vec<f64>| -> Vec<f64> { f.into_iter().map(|v| v.clamp(0.0, cap)).collect() };
        let linear = linear.map(clamp);
        let profile = profile.map(clamp);
        let out: Vec<Option<Vec<f64>>> = self
            .cfg
            .candidates
            .iter()
            .map(|m| match m {
                Method::Linear => linear.clone(),
                Method::Blend => match (&linear, &sn168) {
                    (Some(a), Some(b)) => {
                        Some(a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect())
                    }
                    _ => None,
                },
                Method::Profile => profile.clone(),
                Method::BlendProfile => match (&linear, &profile) {
                    (Some(a), Some(b)) => {
                        Some(a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect())
                    }
                    _ => None,
                },
                Method::SeasonalNaive168 => sn168.clone(),
                Method::SeasonalNaive24 => sn24.clone(),
            })
            .collect();
        let rc = Rc::new(out);
        self.cache.insert(n, Rc::clone(&rc));
        rc
    }

    /// Forecast from origin `n` with the method the chain selects.
    pub fn forecast_at(&mut self, n: usize) -> Result<Forecast> {
        self.forecast_with(n, None)
    }

    /// Forecast from origin `n`; `force` skips the selection (for baselines).
    pub fn forecast_with(&mut self, n: usize, force: Option<Method>) -> Result<Forecast> {
        if self.cfg.horizon < 24 {
            return Err(Error::Config(
                "the forecast horizon must cover a day".into(),
            ));
        }
        if n > self.values.len() || n < 24 {
            return Err(Error::NotEnoughData(format!("origin {n}")));
        }
        let now = self.candidates_at(n);
        let idx = match force {
            Some(m) => self
                .cfg
                .candidates
                .iter()
                .position(|c| *c == m)
                .filter(|i| now[*i].is_some())
                .ok_or_else(|| Error::NotEnoughData(format!("{} cannot run", m.name())))?,
            None => self.select(n, &now)?,
        };
        let point = now[idx]
            .clone()
            .ok_or_else(|| Error::NotEnoughData("no forecast".into()))?;
        let upper = self.upper(n, idx, &point);
        Ok(Forecast {
            method: self.cfg.candidates[idx],
            point,
            upper,
        })
    }

    fn select(&mut self, n: usize, now: &[Option<Vec<f64>>]) -> Result<usize> {
        let mut best: Option<(usize, f64)> = None;
        let mut fallback = None;
        let mut scores = vec![(0.0, 0usize); now.len()];
        for v in 1..=self.cfg.validation_days {
            let Some(o) = n.checked_sub(24 * v) else {
                break;
            };
            if o < 24 {
                break;
            }
            let past = self.candidates_at(o);
            // score only on days every live candidate could forecast, so a
            // method is not favoured for having skipped the hard early days
            if now
                .iter()
                .zip(past.iter())
                .any(|(a, b)| a.is_some() && b.is_none())
            {
                break;
            }
            let actual = &self.values[o..o + 24];
            for (i, f) in past.iter().enumerate() {
                if let Some(f) = f {
                    scores[i].0 += metrics::mae(actual, &f[..24]);
                    scores[i].1 += 1;
                }
            }
        }
        for (i, f) in now.iter().enumerate() {
            if f.is_none() {
                continue;
            }
            fallback.get_or_insert(i);
            let (sum, cnt) = scores[i];
            if cnt == 0 {
                continue;
            }
            let s = sum / cnt as f64;
            if best.is_none_or(|(_, b)| s < b) {
                best = Some((i, s));
            }
        }
        best.map(|(i, _)| i)
            .or(fallback)
            .ok_or_else(|| Error::NotEnoughData(format!("no method can forecast from origin {n}")))
    }

    /// Upper quantile per horizon: the quantile of log residuals that the same
    /// method made from recent origins at nearby horizons, added in log space.
    fn upper(&mut self, n: usize, idx: usize, point: &[f64]) -> Vec<f64> {
        let hz = point.len();
        let mut res: Vec<Vec<(f64, f64)>> = vec![Vec::new(); hz];
        let mut weight = 1.0;
        for v in 1..=self.cfg.residual_days {
            let Some(o) = n.checked_sub(24 * v) else {
                break;
            };
            if o < 24 {
                break;
            }
            let past = self.candidates_at(o);
            if let Some(f) = &past[idx] {
                for h in 1..=hz.min(n - o) {
                    let r = self.values[o + h - 1].max(0.0).ln_1p() - f[h - 1].max(0.0).ln_1p();
                    res[h - 1].push((r, weight));
                }
            }
            // older days count less, so one regime change a week ago does
            // not inflate the quantile for the whole week
            weight *= self.cfg.residual_decay;
        }
        let all: Vec<(f64, f64)> = res.iter().flatten().copied().collect();
        // after a regime change the residuals are huge; the quantile must not
        // buy more than twice the recent peak (the point forecast's cap too)
        let cap = 2.0
            * self.values[n.saturating_sub(336)..n]
                .iter()
                .copied()
                .fold(0.0, f64::max);
        (1..=hz)
            .map(|h| {
                let lo = h.saturating_sub(3).max(1);
                let hi = (h + 3).min(hz);
                let pool: Vec<(f64, f64)> =
                    (lo..=hi).flat_map(|k| res[k - 1].iter().copied()).collect();
                // thin pools (long horizons early on) borrow from all horizons
                let q = if pool.len() >= 10 {
                    metrics::weighted_quantile(&pool, self.cfg.quantile)
                } else {
                    metrics::weighted_quantile(&all, self.cfg.quantile)
                };
                let q = if q.is_finite() { q.max(0.0) } else { 0.25 };
                let p = point[h - 1].max(0.0);
                let band = p * self.cfg.max_band + 1.0;
                (p.ln_1p() + q).exp_m1().min(cap).min(band).max(p)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekly(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let day = (i / 24) % 7;
                100.0 + 50.0 * day as f64 + (i % 24) as f64
            })
            .collect()
    }

    #[test]
    fn picks_seasonal_naive_168_on_pure_weekly_pattern() {
        let v = weekly(24 * 14);
        let cal = Calendar::german();
        let cfg = ChainConfig {
            candidates: vec![Method::SeasonalNaive24, Method::SeasonalNaive168],
            ..Default::default()
        };
        let mut f = Forecaster::new(&v, 0, &cal, &cfg);
        let fc = f.forecast_at(24 * 13).unwrap();
        assert_eq!(fc.method, Method::SeasonalNaive168);
        assert_eq!(fc.point[..24], v[24 * 13..24 * 14]);
        // perfect history → zero residuals → upper equals point
        assert!(fc
            .upper
            .iter()
            .zip(&fc.point)
            .all(|(u, p)| (u - p).abs() < 1e-9));
        let forced = f
            .forecast_with(24 * 13, Some(Method::SeasonalNaive24))
            .unwrap();
        assert_eq!(forced.method, Method::SeasonalNaive24);
        assert!(f.forecast_with(24 * 13, Some(Method::Linear)).is_err());
    }

    #[test]
    fn upper_quantile_covers_noise() {
        // deterministic pseudo-noise on a daily pattern
        let mut x: u64 = 7;
        let v: Vec<f64> = (0..24 * 21)
            .map(|i| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                100.0 + 20.0 * ((i % 24) as f64 / 4.0).sin() + 20.0 * u
            })
            .collect();
        let cal = Calendar::german();
        let cfg = ChainConfig::default();
        let mut f = Forecaster::new(&v, 0, &cal, &cfg);
        let fc = f.forecast_at(24 * 20).unwrap();
        assert!(fc.upper.iter().zip(&fc.point).all(|(u, p)| u >= p));
        let cov = metrics::coverage(&v[24 * 20..], &fc.upper[..24]);
        assert!(cov >= 0.6, "coverage {cov}");
    }
}
