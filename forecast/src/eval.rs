//! The evaluation protocol of shared/data/README.md: rolling origin over the
//! last 7 days, refit every day, 24-hour forecasts, MASE scaled by the
//! in-sample seasonal-naive-24 MAE, sMAPE, pinball loss and coverage of the
//! planning quantile; the chain is scored next to the seasonal-naive baselines.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::calendar::Calendar;
use crate::chain::{ChainConfig, Forecaster, Method};
use crate::error::{Error, Result};
use crate::metrics;
use crate::series::HourlySeries;

/// Test window and step of the protocol.
pub const TEST_DAYS: usize = 7;
pub const DAY: usize = 24;

/// Scores of one method on one series.
#[derive(Debug, Clone)]
pub struct Row {
    pub series: String,
    pub method: String,
    pub mase: f64,
    pub smape: f64,
    pub pinball: f64,
    pub coverage: f64,
    /// Which method the chain chose on each test day (empty for baselines).
    pub chosen: Vec<Method>,
}

/// All rows of one method plus its summary.
#[derive(Debug, Clone)]
pub struct MethodReport {
    pub method: String,
    pub rows: Vec<Row>,
    pub geo_mase: f64,
    pub mean_smape: f64,
    pub mean_coverage: f64,
    pub mean_pinball_scaled: f64,
}

/// The whole evaluation.
#[derive(Debug, Clone)]
pub struct Report {
    pub methods: Vec<MethodReport>,
    pub skipped: Vec<String>,
    pub seconds: f64,
}

/// What is scored: the chain, the seasonal-naive baselines, and the
/// Prophet-like profile alone (the yardstick for series without a Prophet
/// run: the chain should not be much worse than the better of it and
/// seasonal-naive 168).
const VARIANTS: [(Option<Method>, &str); 4] = [
    (None, "model"),
    (Some(Method::SeasonalNaive24), "snaive24"),
    (Some(Method::SeasonalNaive168), "snaive168"),
    (Some(Method::Profile), "profile"),
];

/// One series' rows (one per variant) and its MASE scale; None if too short.
type SeriesResult = Option<(Vec<Row>, f64)>;

fn evaluate_one(s: &HourlySeries, cal: &Calendar, cfg: &ChainConfig) -> Result<SeriesResult> {
    let n = s.values.len();
    let test_start = match n.checked_sub(TEST_DAYS * DAY) {
        Some(t) if t > 168 => t,
        _ => return Ok(None),
    };
    let scale = metrics::seasonal_naive_mae(&s.values[..test_start], 24);
    if !(scale.is_finite() && scale > 0.0) {
        return Ok(None);
    }
    let mut base_cfg = cfg.clone();
    base_cfg.candidates = vec![Method::SeasonalNaive168, Method::SeasonalNaive24];
    let actual = &s.values[test_start..];
    let mut model = Forecaster::new(&s.values, s.start_hour, cal, cfg);
    let mut base = Forecaster::new(&s.values, s.start_hour, cal, &base_cfg);
    let mut rows = Vec::with_capacity(VARIANTS.len());
    for (force, label) in VARIANTS {
        let mut point = Vec::with_capacity(actual.len());
        let mut upper = Vec::with_capacity(actual.len());
        let mut chosen = Vec::new();
        for d in 0..TEST_DAYS {
            let origin = test_start + d * DAY;
            let f = match force {
                None => model.forecast_at(origin)?,
                Some(Method::Profile) => model.forecast_with(origin, force)?,
                Some(m) => base.forecast_with(origin, Some(m))?,
            };
            if force.is_none() {
                chosen.push(f.method);
            }
            point.extend_from_slice(&f.point[..DAY]);
            upper.extend_from_slice(&f.upper[..DAY]);
        }
        rows.push(Row {
            series: s.name.clone(),
            method: label.to_string(),
            mase: metrics::mase(actual, &point, scale),
            smape: metrics::smape(actual, &point),
            pinball: metrics::pinball(actual, &upper, cfg.quantile),
            coverage: metrics::coverage(actual, &upper),
            chosen,
        });
    }
    Ok(Some((rows, scale)))
}

/// Runs `f` over `items` on all cores, keeping the input order.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().max(1));
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| {
                let f = &f;
                scope.spawn(move || c.iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        handles
            .into_iter()
            // a worker only panics if `f` does; pass that on unchanged
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Evaluates the chain and the forced baselines on every series.
pub fn evaluate(series: &[HourlySeries], cal: &Calendar, cfg: &ChainConfig) -> Result<Report> {
    let started = Instant::now();
    let results = par_map(series, |s| evaluate_one(s, cal, cfg));
    let mut rows: Vec<Vec<Row>> = vec![Vec::new(); VARIANTS.len()];
    let mut scales = Vec::new();
    let mut skipped = Vec::new();
    for (s, r) in series.iter().zip(results) {
        match r? {
            Some((series_rows, scale)) => {
                scales.push(scale);
                for (v, row) in series_rows.into_iter().enumerate() {
                    rows[v].push(row);
                }
            }
            None => skipped.push(s.name.clone()),
        }
    }
    if scales.is_empty() {
        return Err(Error::NotEnoughData(
            "no series longer than 8 days with a non-zero in-sample scale".into(),
        ));
    }
    let methods = VARIANTS
        .iter()
        .zip(rows)
        .map(|((_, label), rows)| summarize(label, rows, &scales))
        .collect();
    Ok(Report {
        methods,
        skipped,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn summarize(label: &str, rows: Vec<Row>, scales: &[f64]) -> MethodReport {
    let k = rows.len().max(1) as f64;
    MethodReport {
        method: label.to_string(),
        geo_mase: metrics::geometric_mean(&rows.iter().map(|r| r.mase).collect::<Vec<_>>()),
        mean_smape: rows.iter().map(|r| r.smape).sum::<f64>() / k,
        mean_coverage: rows.iter().map(|r| r.coverage).sum::<f64>() / k,
        // pinball divided by the MASE scale, so series of any size weigh alike
        mean_pinball_scaled: rows
            .iter()
            .zip(scales)
            .map(|(r, s)| r.pinball / s)
            .sum::<f64>()
            / k,
        rows,
    }
}

impl Report {
    /// The table printed by `warden forecast eval`.
    pub fn render(&self, quantile: f64) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for m in &self.methods {
            let _ = writeln!(
                out,
                "## {}\n{:<16} {:>8} {:>8} {:>12} {:>8}  chosen",
                m.method, "series", "MASE", "sMAPE%", "pinball", "cover"
            );
            for r in &m.rows {
                let _ = writeln!(
                    out,
                    "{:<16} {:>8.3} {:>8.2} {:>12.3} {:>8.3}  {}",
                    r.series,
                    r.mase,
                    r.smape,
                    r.pinball,
                    r.coverage,
                    chosen_summary(&r.chosen)
                );
            }
            let _ = writeln!(
                out,
                "{:<16} {:>8.3} {:>8.2} {:>12.3} {:>8.3}  (geo-mean MASE, mean sMAPE, mean pinball/scale, mean coverage of q{quantile})\n",
                "SUMMARY", m.geo_mase, m.mean_smape, m.mean_pinball_scaled, m.mean_coverage
            );
        }
        let _ = writeln!(out, "{:<12} {:>10} {:>10}", "method", "geoMASE", "sMAPE%");
        for m in &self.methods {
            let _ = writeln!(
                out,
                "{:<12} {:>10.3} {:>10.2}",
                m.method, m.geo_mase, m.mean_smape
            );
        }
        if let [model, sn24, sn168, profile] = &self.methods[..] {
            let worst = |other: &dyn Fn(usize) -> f64| {
                model
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (m.series.clone(), m.mase / other(i)))
                    .fold(
                        (String::new(), 0.0),
                        |acc, x| if x.1 > acc.1 { x } else { acc },
                    )
            };
            let (s, r) = worst(&|i| sn24.rows[i].mase.min(sn168.rows[i].mase));
            let _ = writeln!(
                out,
                "worst series vs the better seasonal-naive: {s} ({r:.2}x)"
            );
            let (s, r) = worst(&|i| sn168.rows[i].mase.min(profile.rows[i].mase));
            let _ = writeln!(
                out,
                "worst series vs the better of snaive168 and the Prophet-like profile: {s} ({r:.2}x)"
            );
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(out, "skipped (too short): {}", self.skipped.join(", "));
        }
        out
    }
}

fn chosen_summary(chosen: &[Method]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for m in chosen {
        *counts.entry(m.name()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k}×{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
