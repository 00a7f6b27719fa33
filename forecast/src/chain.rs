//! The fallback chain: per series and per forecast origin, rank the
//! candidate methods by rolling-origin backtests on the days before it,
//! take the winner if it wins clearly and else average the best two (one
//! noisy week must not pick a loser), attach a
//! raw upper quantile from the combination's own rolling residuals, and
//! calibrate it by split conformal on the past origins' raw quantiles, so
//! the planning quantile covers what it says. Forecasts per origin are
//! cached, so a rolling evaluation or a simulator that moves forward a day
//! at a time refits each origin only once.

use std::collections::HashMap;
use std::rc::Rc;

use crate::calendar::Calendar;
use crate::error::{Error, Result};
use crate::metrics;
use crate::model::{linear_forecast, profile_forecast, seasonal_naive, LinearConfig};
use crate::occupancy::Occupancy;

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

/// How the chain turns the candidates' backtest errors into one forecast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selection {
    /// The candidate with the lowest backtest error.
    Best,
    /// The mean of the `k` candidates with the lowest backtest errors.
    MeanOfBest(usize),
    /// The best candidate alone when it beats the runner-up by more than
    /// this share of the runner-up's error (a clear winner, e.g. the only
    /// method that follows a regime change), else the mean of the two: a
    /// thin margin is mostly noise, and the mean of two good forecasts is
    /// rarely much worse than the better one.
    Margin(f64),
}

/// Settings of the chain.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// Hours ahead produced at each origin (direct models 1..=horizon).
    pub horizon: usize,
    /// Days before the origin on which candidates compete: one backtest
    /// fold per day, each fitted only on the data before it and scored on
    /// the hours of its horizon known by the origin (rolling origin).
    pub validation_days: usize,
    /// Weight of each older fold relative to the next newer one.
    pub fold_decay: f64,
    /// Days before the origin whose forecast errors give the raw quantiles.
    pub residual_days: usize,
    /// Weight of each older day's residuals relative to the next newer day.
    pub residual_decay: f64,
    /// Planning quantile, e.g. 0.9.
    pub quantile: f64,
    /// The raw quantile stays below `point × max_band + 1`: residuals from
    /// before a level shift would otherwise buy days of idle capacity.
    pub max_band: f64,
    /// Days of past origins whose raw quantile forecasts calibrate the
    /// quantile (split conformal on the data before the origin); 0 turns
    /// the calibration off.
    pub calibration_days: usize,
    /// Weight of each older calibration day relative to the next newer one.
    pub calibration_decay: f64,
    /// Candidates in order of preference (earlier wins ties).
    pub candidates: Vec<Method>,
    pub selection: Selection,
    pub linear: LinearConfig,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            horizon: 48,
            validation_days: 14,
            residual_days: 7,
            residual_decay: 0.7,
            quantile: 0.9,
            max_band: 1.5,
            calibration_days: 14,
            calibration_decay: 0.9,
            candidates: vec![
                Method::Linear,
                Method::Blend,
                Method::Profile,
                Method::BlendProfile,
                Method::SeasonalNaive168,
                Method::SeasonalNaive24,
            ],
            selection: Selection::Margin(0.3),
            fold_decay: 0.85,
            linear: LinearConfig::default(),
        }
    }
}

/// A forecast from one origin.
#[derive(Debug, Clone)]
pub struct Forecast {
    /// The candidate with the lowest backtest error.
    pub method: Method,
    /// The candidates averaged into `point`, `method` first.
    pub members: Vec<Method>,
    /// Point forecasts for hours 1..=horizon after the origin.
    pub point: Vec<f64>,
    /// Forecasts of the planning quantile for the same hours, calibrated.
    pub upper: Vec<f64>,
    /// The calibration's shifts of the raw quantile in log1p units, one per
    /// day of horizon (empty when calibration is off; 0 where there was
    /// too little history).
    pub shifts: Vec<f64>,
    /// Probability that demand is above zero in each of the same hours
    /// ([`crate::occupancy`]): what a scale-to-zero fleet should hold a
    /// warm node for, where the quantile of the amount is the wrong
    /// question. 1 throughout for a series that is never empty.
    pub p_any: Vec<f64>,
    /// The fitted occupancy model behind `p_any`, to apply to newer
    /// history between refits (whether anyone is there now matters most).
    pub occupancy: Occupancy,
}

impl Forecast {
    /// What to hold capacity for in each hour ahead: the calibrated
    /// quantile where the probability that anyone comes reaches `p_hold`,
    /// else nothing (a warm node for an empty hour is paid in full; a busy
    /// series is never gated).
    pub fn hold(&self, p_hold: f64) -> Vec<f64> {
        self.upper
            .iter()
            .zip(&self.p_any)
            .map(|(u, p)| if *p >= p_hold { *u } else { 0.0 })
            .collect()
    }
}

/// One origin's forecast before calibration.
#[derive(Debug)]
struct Raw {
    members: Vec<usize>,
    point: Vec<f64>,
    upper: Vec<f64>,
}

type Candidates = Rc<Vec<Option<Vec<f64>>>>;

/// Per-series forecaster over a fixed value array; `forecast_at(n)` sees only `values[..n]`.
pub struct Forecaster<'a> {
    values: &'a [f64],
    start_hour: i64,
    cal: &'a Calendar,
    cfg: &'a ChainConfig,
    cache: HashMap<usize, Candidates>,
    raw: HashMap<(usize, Option<Method>), Option<Rc<Raw>>>,
    /// The last occupancy fit and the origin it was fitted at.
    occupancy: Option<(usize, Occupancy)>,
}

/// Element-wise mean of the forecasts of `members`; None if one is missing.
fn mean_of(now: &[Option<Vec<f64>>], members: &[usize]) -> Option<Vec<f64>> {
    let mut out: Vec<f64> = Vec::new();
    for &i in members {
        let f = now.get(i)?.as_ref()?;
        if out.is_empty() {
            out = f.clone();
        } else {
            out.iter_mut().zip(f).for_each(|(a, b)| *a += b);
        }
    }
    let k = members.len().max(1) as f64;
    out.iter_mut().for_each(|v| *v /= k);
    (!out.is_empty()).then_some(out)
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
            raw: HashMap::new(),
            occupancy: None,
        }
    }

    /// Every candidate's forecast from origin `n` (None where it cannot run).
    fn candidates_at(&mut self, n: usize) -> Candidates {
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
        let cap = 2.0 * recent_peak(hist);
        let clamp =
            |f: Vec<f64>| -> Vec<f64> { f.into_iter().map(|v| v.clamp(0.0, cap)).collect() };
        let linear = linear.map(clamp);
        let profile = profile.map(clamp);
        let pair = |a: &Option<Vec<f64>>, b: &Option<Vec<f64>>| match (a, b) {
            (Some(a), Some(b)) => Some(a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect()),
            _ => None,
        };
        let out: Vec<Option<Vec<f64>>> = self
            .cfg
            .candidates
            .iter()
            .map(|m| match m {
                Method::Linear => linear.clone(),
                Method::Blend => pair(&linear, &sn168),
                Method::Profile => profile.clone(),
                Method::BlendProfile => pair(&linear, &profile),
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
        let raw = self.raw_at(n, force).ok_or_else(|| match force {
            Some(m) => Error::NotEnoughData(format!("{} cannot run", m.name())),
            None => Error::NotEnoughData(format!("no method can forecast from origin {n}")),
        })?;
        let shifts = if self.cfg.calibration_days > 0 {
            self.conformal_shifts(n, force)
        } else {
            Vec::new()
        };
        let cap = 2.0 * recent_peak(&self.values[..n]);
        let upper = raw
            .upper
            .iter()
            .zip(&raw.point)
            .enumerate()
            .map(|(h, (u, p))| {
                let shift = shifts.get(h / 24).copied().unwrap_or(0.0);
                let u = (u.max(0.0).ln_1p() + shift).exp_m1();
                u.min(cap.max(*p)).max(*p)
            })
            .collect();
        let members: Vec<Method> = raw
            .members
            .iter()
            .map(|&i| self.cfg.candidates[i])
            .collect();
        let hist = &self.values[..n];
        // one fit a day is plenty: a day's newer hours barely move the
        // weights, and the prediction below reads the latest hours anyway
        let occupancy = match &self.occupancy {
            Some((at, o)) if *at <= n && n < at + 24 => o.clone(),
            _ => {
                let o = Occupancy::fit(hist, self.start_hour, self.cfg.horizon);
                self.occupancy = Some((n, o.clone()));
                o
            }
        };
        Ok(Forecast {
            method: members[0],
            members,
            point: raw.point.clone(),
            upper,
            shifts,
            p_any: occupancy.predict(hist, self.start_hour, self.cfg.horizon),
            occupancy,
        })
    }

    /// The forecast from origin `n` before calibration, cached.
    fn raw_at(&mut self, n: usize, force: Option<Method>) -> Option<Rc<Raw>> {
        if let Some(r) = self.raw.get(&(n, force)) {
            return r.clone();
        }
        let now = self.candidates_at(n);
        let members = match force {
            Some(m) => self
                .cfg
                .candidates
                .iter()
                .position(|c| *c == m)
                .filter(|i| now[*i].is_some())
                .map(|i| vec![i]),
            None => self.choose(n, &now),
        };
        let raw = members.and_then(|members| {
            let point = mean_of(&now, &members)?;
            let upper = self.upper(n, &members, &point);
            Some(Rc::new(Raw {
                members,
                point,
                upper,
            }))
        });
        self.raw.insert((n, force), raw.clone());
        raw
    }

    /// Mean 24-hour MAE of each candidate over the backtest folds before
    /// `n` (None for a candidate that cannot run now).
    fn backtest(&mut self, n: usize, now: &[Option<Vec<f64>>]) -> Vec<Option<f64>> {
        let mut scores = vec![(0.0, 0.0); now.len()];
        let mut weight = 1.0;
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
            // every hour of the fold's horizon that is known by now
            let hours = self.cfg.horizon.min(n - o);
            let actual = &self.values[o..o + hours];
            for (i, f) in past.iter().enumerate() {
                if let Some(f) = f {
                    scores[i].0 += weight * metrics::mae(actual, &f[..hours]);
                    scores[i].1 += weight;
                }
            }
            weight *= self.cfg.fold_decay;
        }
        now.iter()
            .zip(scores)
            .map(|(f, (sum, w))| {
                f.as_ref()
                    .map(|_| if w > 0.0 { sum / w } else { f64::INFINITY })
            })
            .collect()
    }

    /// The candidates the point forecast averages, best first.
    fn choose(&mut self, n: usize, now: &[Option<Vec<f64>>]) -> Option<Vec<usize>> {
        let scores = self.backtest(n, now);
        let mut ranked: Vec<(usize, f64)> = scores
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .collect();
        // stable: earlier candidates win ties (and all-unscored runs)
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
        let best = ranked.first()?.0;
        let k = match self.cfg.selection {
            Selection::Best => 1,
            Selection::MeanOfBest(k) => k.max(1),
            Selection::Margin(m) => match ranked.get(1) {
                Some(&(_, s2)) if s2.is_finite() && ranked[0].1 > (1.0 - m) * s2 => 2,
                _ => 1,
            },
        };
        let members: Vec<usize> = ranked.iter().take(k).map(|(i, _)| *i).collect();
        Some(if members.is_empty() {
            vec![best]
        } else {
            members
        })
    }

    /// Raw upper quantile per horizon: the quantile of log residuals that
    /// the same combination made from recent origins at nearby horizons,
    /// added in log space.
    fn upper(&mut self, n: usize, members: &[usize], point: &[f64]) -> Vec<f64> {
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
            if let Some(f) = mean_of(&past, members) {
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
        let cap = 2.0 * recent_peak(&self.values[..n]);
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

    /// Split-conformal calibration of the raw quantile, one shift per day
    /// of horizon (hours 1–24, 25–48, …). Over the daily origins of the
    /// last `calibration_days` whose hours of that band lie before `n`,
    /// the log1p excess of the actual over the raw quantile is a score,
    /// weighted `calibration_decay` per day of age; the shift is the
    /// [`conformal_quantile`] of the scores, so the shifted quantile would
    /// have covered a share q of them. Only `values[..n]` is read.
    fn conformal_shifts(&mut self, n: usize, force: Option<Method>) -> Vec<f64> {
        let bands = self.cfg.horizon.div_ceil(24);
        let mut scores: Vec<Vec<(f64, f64)>> = vec![Vec::new(); bands];
        let reach = self.cfg.calibration_days + bands - 1;
        for d in 1..=reach {
            let Some(o) = n.checked_sub(24 * d) else {
                break;
            };
            if o < 24 {
                break;
            }
            let Some(r) = self.raw_at(o, force) else {
                continue;
            };
            // band b (hours 24b+1 ..= 24b+24) is complete before n when b < d
            for (b, band) in scores.iter_mut().enumerate().take(d) {
                let age = d - b - 1;
                if age >= self.cfg.calibration_days {
                    continue;
                }
                let w = self.cfg.calibration_decay.powi(age as i32);
                for h in 24 * b..(24 * b + 24).min(r.upper.len()) {
                    let s = self.values[o + h].max(0.0).ln_1p() - r.upper[h].max(0.0).ln_1p();
                    band.push((s, w));
                }
            }
        }
        // a band without enough scores borrows the previous band's shift
        let mut out = Vec::with_capacity(bands);
        for mut s in scores {
            let prev = out.last().copied().unwrap_or(0.0);
            out.push(conformal_quantile(&mut s, self.cfg.quantile).unwrap_or(prev));
        }
        out
    }
}

/// The conformal quantile of weighted scores `(score, weight)`: the
/// smallest score whose cumulative weight reaches q of the total plus one
/// more unit for the point to be covered (taken as +∞). With equal weights
/// this is the ⌈(m + 1)·q⌉-th smallest of m scores, split conformal's
/// finite-sample rank; past the last score, the largest. None with fewer
/// than a day of scores.
pub fn conformal_quantile(scores: &mut [(f64, f64)], q: f64) -> Option<f64> {
    if scores.len() < 24 {
        return None;
    }
    scores.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = scores.iter().map(|s| s.1).sum::<f64>() + 1.0;
    let mut acc = 0.0;
    for (s, w) in scores.iter() {
        acc += w;
        if acc >= q * total - 1e-9 {
            return Some(*s);
        }
    }
    scores.last().map(|s| s.0)
}

/// The largest value of the last two weeks of `hist`.
fn recent_peak(hist: &[f64]) -> f64 {
    hist[hist.len().saturating_sub(336)..]
        .iter()
        .copied()
        .fold(0.0, f64::max)
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

    /// The two seasonal-naive candidates only (fast, and exact on `weekly`).
    fn naive(selection: Selection) -> ChainConfig {
        ChainConfig {
            candidates: vec![Method::SeasonalNaive24, Method::SeasonalNaive168],
            selection,
            ..Default::default()
        }
    }

    #[test]
    fn picks_seasonal_naive_168_on_pure_weekly_pattern() {
        // four weeks: the calibration's fortnight of past origins all had
        // snaive168, which was perfect, so nothing widens the quantile
        let v = weekly(24 * 28);
        let cal = Calendar::german();
        let cfg = naive(Selection::Best);
        let mut f = Forecaster::new(&v, 0, &cal, &cfg);
        let fc = f.forecast_at(24 * 27).unwrap();
        assert_eq!(fc.method, Method::SeasonalNaive168);
        assert_eq!(fc.members, vec![Method::SeasonalNaive168]);
        assert_eq!(fc.point[..24], v[24 * 27..24 * 28]);
        assert_eq!(fc.shifts, vec![0.0, 0.0]);
        // perfect history → zero residuals → upper equals point
        assert!(fc
            .upper
            .iter()
            .zip(&fc.point)
            .all(|(u, p)| (u - p).abs() < 1e-9));
        let forced = f
            .forecast_with(24 * 27, Some(Method::SeasonalNaive24))
            .unwrap();
        assert_eq!(forced.method, Method::SeasonalNaive24);
        assert!(f.forecast_with(24 * 27, Some(Method::Linear)).is_err());
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

    #[test]
    fn mean_of_best_two_averages_the_two_best_backtests() {
        let v = weekly(24 * 14);
        let cal = Calendar::german();
        let cfg = naive(Selection::MeanOfBest(2));
        let mut f = Forecaster::new(&v, 0, &cal, &cfg);
        let fc = f.forecast_at(24 * 13).unwrap();
        // snaive168 is perfect here, so it ranks first
        assert_eq!(
            fc.members,
            vec![Method::SeasonalNaive168, Method::SeasonalNaive24]
        );
        let sn24 = seasonal_naive(&v[..24 * 13], 24, 48);
        let sn168 = seasonal_naive(&v[..24 * 13], 168, 48);
        for (h, p) in fc.point.iter().enumerate() {
            assert!((p - 0.5 * (sn24[h] + sn168[h])).abs() < 1e-9, "hour {h}");
        }
    }

    #[test]
    fn a_clear_winner_stands_alone_a_thin_margin_blends() {
        let cal = Calendar::german();
        let cfg = naive(Selection::Margin(0.3));
        // snaive168 is perfect on a weekly pattern: it wins alone
        let v = weekly(24 * 28);
        let fc = Forecaster::new(&v, 0, &cal, &cfg)
            .forecast_at(24 * 27)
            .unwrap();
        assert_eq!(fc.members, vec![Method::SeasonalNaive168]);
        // on a noisy daily pattern the two are about as good: the mean
        let v = noisy(28, 0.3);
        let fc = Forecaster::new(&v, 0, &cal, &cfg)
            .forecast_at(24 * 27)
            .unwrap();
        assert_eq!(fc.members.len(), 2, "{:?}", fc.members);
    }

    #[test]
    fn hold_gates_the_quantile_by_the_odds() {
        // empty but from 18:00 to 22:00
        let v: Vec<f64> = (0..24 * 35)
            .map(|i| {
                if (18..22).contains(&(i % 24)) {
                    4.0
                } else {
                    0.0
                }
            })
            .collect();
        let cal = Calendar::german();
        let cfg = ChainConfig {
            candidates: vec![Method::SeasonalNaive168, Method::SeasonalNaive24],
            ..Default::default()
        };
        let fc = Forecaster::new(&v, 0, &cal, &cfg)
            .forecast_at(24 * 34)
            .unwrap();
        assert_eq!(fc.p_any.len(), 48);
        let held = fc.hold(0.5);
        for (h, x) in held.iter().enumerate() {
            if (18..22).contains(&(h % 24)) {
                assert!(fc.p_any[h] > 0.5 && *x >= 4.0, "hour {h}: {x}");
            } else {
                assert!(fc.p_any[h] < 0.5 && *x == 0.0, "hour {h}: {x}");
            }
        }
        // the never-empty series is never gated
        let busy = weekly(24 * 28);
        let fc = Forecaster::new(&busy, 0, &cal, &cfg)
            .forecast_at(24 * 27)
            .unwrap();
        assert_eq!(fc.hold(0.99), fc.upper);
    }

    #[test]
    fn conformal_quantile_ranks_and_weights() {
        // 99 equal scores 1..=99: rank ⌈100 × 0.9⌉ = 90
        let mut s: Vec<(f64, f64)> = (1..=99).map(|i| (f64::from(i), 1.0)).collect();
        assert_eq!(conformal_quantile(&mut s, 0.9), Some(90.0));
        // 24 scores: rank ⌈25 × 0.9⌉ = 23
        let mut s: Vec<(f64, f64)> = (1..=24).map(|i| (f64::from(i), 1.0)).collect();
        assert_eq!(conformal_quantile(&mut s, 0.9), Some(23.0));
        // beyond the last rank: the largest score
        assert_eq!(conformal_quantile(&mut s, 0.99), Some(24.0));
        // old large scores weigh little: the recent small ones decide
        let mut w: Vec<(f64, f64)> = (0..48)
            .map(|i| if i < 24 { (100.0, 0.01) } else { (1.0, 1.0) })
            .collect();
        assert_eq!(conformal_quantile(&mut w, 0.9), Some(1.0));
        assert_eq!(conformal_quantile(&mut s[..10].to_vec(), 0.9), None);
    }

    /// A daily pattern times log-normal noise far wider than the raw
    /// quantile's band allows, so the raw quantile under-covers.
    fn noisy(days: usize, sigma: f64) -> Vec<f64> {
        let mut rng = crate::sim::Rng::new(11);
        (0..24 * days)
            .map(|i| {
                let base = 50.0 + 30.0 * (i as f64 * std::f64::consts::PI / 12.0).sin();
                base * (sigma * rng.normal()).exp()
            })
            .collect()
    }

    /// Coverage of the planning quantile over the 24 hours after each of
    /// the last `days` daily origins.
    fn held_out_coverage(v: &[f64], cfg: &ChainConfig, days: usize) -> f64 {
        let cal = Calendar::german();
        let mut f = Forecaster::new(v, 0, &cal, cfg);
        let first = v.len() - 24 * days;
        let (mut actual, mut upper) = (Vec::new(), Vec::new());
        for d in 0..days {
            let o = first + 24 * d;
            let fc = f.forecast_at(o).unwrap();
            actual.extend_from_slice(&v[o..o + 24]);
            upper.extend_from_slice(&fc.upper[..24]);
        }
        metrics::coverage(&actual, &upper)
    }

    #[test]
    fn conformal_calibration_moves_coverage_to_the_target() {
        let v = noisy(50, 0.6);
        let base = ChainConfig {
            candidates: vec![Method::SeasonalNaive168, Method::SeasonalNaive24],
            ..Default::default()
        };
        let raw = ChainConfig {
            calibration_days: 0,
            ..base.clone()
        };
        let before = held_out_coverage(&v, &raw, 21);
        let after = held_out_coverage(&v, &base, 21);
        assert!(before < 0.8, "raw coverage {before}");
        assert!(
            (after - 0.9).abs() < 0.04,
            "calibrated coverage {after} (raw {before})"
        );
        // and it pulls an over-wide quantile down: q0.5 asked, q0.9's raw
        // band would over-cover
        let median = ChainConfig {
            quantile: 0.5,
            ..base
        };
        let half = held_out_coverage(&v, &median, 21);
        assert!((half - 0.5).abs() < 0.08, "q0.5 coverage {half}");
    }
}
