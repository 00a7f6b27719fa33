//! The probability that anyone comes: for a sparse, scale-to-zero series
//! (most hours empty) the decision is whether to hold a warm node at all,
//! and a quantile of the amount answers the wrong question (the q0.9 of an
//! hour that is empty 85 % of the time is already "one server"). This
//! module forecasts P(demand > 0) for each hour ahead with a logistic
//! regression on the hour of day and week, whether demand is there at the
//! origin (fading with the horizon), and how often the last day and the
//! same hour of the last week were busy. Only values up to the origin are
//! read.

use std::f64::consts::PI;

/// Days of history the model is fitted on.
pub const WINDOW_DAYS: usize = 28;
/// Horizons the training rows sample (the model is smooth in the horizon).
const TRAIN_HORIZONS: [usize; 7] = [1, 2, 3, 6, 12, 24, 48];
/// Regressors per row, the intercept included.
const P: usize = 15;
/// Ridge on all weights but the intercept.
const RIDGE: f64 = 1.0;

/// 0/1 activity with prefix sums, so window shares cost O(1).
struct Activity {
    a: Vec<f64>,
    prefix: Vec<f64>,
}

impl Activity {
    fn new(values: &[f64]) -> Self {
        let a: Vec<f64> = values
            .iter()
            .map(|v| f64::from(u8::from(*v > 0.0)))
            .collect();
        let mut prefix = Vec::with_capacity(a.len() + 1);
        prefix.push(0.0);
        for v in &a {
            prefix.push(prefix[prefix.len() - 1] + v);
        }
        Activity { a, prefix }
    }

    /// Share of active hours in `a[lo..hi]` (0 for an empty range).
    fn share(&self, lo: usize, hi: usize) -> f64 {
        if hi <= lo {
            return 0.0;
        }
        (self.prefix[hi] - self.prefix[lo]) / (hi - lo) as f64
    }
}

/// The regressors for target hour `t + h` (epoch hour `hour`) seen from
/// origin index `t` (the last known hour); needs `t >= 167`.
fn row(s: &Activity, t: usize, h: usize, hour: i64, out: &mut [f64; P]) {
    let hod = hour.rem_euclid(24) as f64;
    let how = hour.rem_euclid(168) as f64;
    let now = s.a[t];
    let hf = h as f64;
    // the same hour of day over the last week, from the origin's side
    let mut same = 0.0;
    let mut k = 0.0;
    let mut back = t + h;
    while back >= 24 && k < 7.0 {
        back -= 24;
        if back <= t {
            same += s.a[back];
            k += 1.0;
        }
    }
    let same = if k > 0.0 { same / k } else { 0.0 };
    let day = 2.0 * PI * hod / 24.0;
    let week = 2.0 * PI * how / 168.0;
    *out = [
        1.0,
        day.sin(),
        day.cos(),
        (2.0 * day).sin(),
        (2.0 * day).cos(),
        (3.0 * day).sin(),
        (3.0 * day).cos(),
        week.sin(),
        week.cos(),
        now * (-hf / 2.0).exp(),
        now * (-hf / 8.0).exp(),
        s.share(t + 1 - 3, t + 1) * (-hf / 4.0).exp(),
        s.share(t + 1 - 24, t + 1),
        s.share(t + 1 - 168, t + 1),
        same,
    ];
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Solves the symmetric positive definite system `a x = b` (row-major
/// p × p) by Cholesky; None if it is not positive definite.
fn solve_spd(a: &[f64], b: &[f64], p: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; p * p];
    for i in 0..p {
        for j in 0..=i {
            let mut s = a[i * p + j];
            for k in 0..j {
                s -= l[i * p + k] * l[j * p + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * p + i] = s.sqrt();
            } else {
                l[i * p + j] = s / l[j * p + j];
            }
        }
    }
    let mut y = vec![0.0; p];
    for i in 0..p {
        let s: f64 = (0..i).map(|k| l[i * p + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * p + i];
    }
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        let s: f64 = (i + 1..p).map(|k| l[k * p + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * p + i];
    }
    Some(x)
}

/// Ridge-penalised logistic regression by iteratively reweighted least
/// squares; None if a step fails.
fn fit_logistic(rows: &[[f64; P]], y: &[f64]) -> Option<[f64; P]> {
    let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let m = mean.clamp(1e-3, 1.0 - 1e-3);
    let mut w = [0.0; P];
    w[0] = (m / (1.0 - m)).ln();
    for _ in 0..12 {
        let mut gram = vec![0.0; P * P];
        let mut rhs = vec![0.0; P];
        for (x, &yi) in rows.iter().zip(y) {
            let eta: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
            let pi = sigmoid(eta);
            let wi = (pi * (1.0 - pi)).max(1e-6);
            let z = eta + (yi - pi) / wi;
            for i in 0..P {
                let xi = wi * x[i];
                rhs[i] += xi * z;
                for j in 0..=i {
                    gram[i * P + j] += xi * x[j];
                }
            }
        }
        for i in 0..P {
            for j in 0..i {
                gram[j * P + i] = gram[i * P + j];
            }
            if i > 0 {
                gram[i * P + i] += RIDGE;
            } else {
                gram[0] += 1e-9;
            }
        }
        let next = solve_spd(&gram, &rhs, P)?;
        let step = next
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        w.copy_from_slice(&next);
        // weights on the logit scale: a ten-thousandth changes no decision
        if step < 1e-4 {
            break;
        }
    }
    w.iter().all(|v| v.is_finite()).then_some(w)
}

/// A fitted occupancy model: refit now and then, applied to the latest
/// history every hour (whether anyone is there now matters most).
#[derive(Debug, Clone)]
pub enum Occupancy {
    /// The window was always busy or always empty, or too short to fit:
    /// this share of busy hours everywhere.
    Constant(f64),
    Logistic([f64; P]),
}

impl Occupancy {
    /// Fits on the last [`WINDOW_DAYS`] of `history` (which starts at epoch
    /// hour `start_hour`), for horizons up to `horizon`.
    pub fn fit(history: &[f64], start_hour: i64, horizon: usize) -> Occupancy {
        let n = history.len();
        let s = Activity::new(history);
        let lo = n.saturating_sub(WINDOW_DAYS * 24);
        let busy = s.share(lo, n);
        if n < 192 || busy == 0.0 || busy == 1.0 {
            return Occupancy::Constant(busy);
        }
        let origin = n - 1;
        let mut rows = Vec::new();
        let mut y = Vec::new();
        let mut x = [0.0; P];
        for t in lo.max(167)..origin {
            for &h in TRAIN_HORIZONS.iter().filter(|&&h| h <= horizon) {
                if t + h > origin {
                    break;
                }
                row(&s, t, h, start_hour + (t + h) as i64, &mut x);
                rows.push(x);
                y.push(s.a[t + h]);
            }
        }
        match fit_logistic(&rows, &y) {
            Some(w) => Occupancy::Logistic(w),
            None => Occupancy::Constant(busy),
        }
    }

    /// P(value > 0) for each of the `horizon` hours after `history`.
    pub fn predict(&self, history: &[f64], start_hour: i64, horizon: usize) -> Vec<f64> {
        let w = match self {
            Occupancy::Logistic(w) if history.len() >= 168 => w,
            Occupancy::Logistic(_) => return vec![0.0; horizon],
            Occupancy::Constant(p) => return vec![*p; horizon],
        };
        let s = Activity::new(history);
        let origin = history.len() - 1;
        let mut x = [0.0; P];
        (1..=horizon)
            .map(|h| {
                row(&s, origin, h, start_hour + (origin + h) as i64, &mut x);
                sigmoid(x.iter().zip(w).map(|(a, b)| a * b).sum())
            })
            .collect()
    }
}

/// P(value > 0) for each of the `horizon` hours after `history` (which
/// starts at epoch hour `start_hour`). A series that was never empty in
/// the window gets 1 everywhere, one that was always empty 0; with less
/// than a week and a day of history, the share of busy hours.
pub fn p_any(history: &[f64], start_hour: i64, horizon: usize) -> Vec<f64> {
    Occupancy::fit(history, start_hour, horizon).predict(history, start_hour, horizon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let x = solve_spd(&a, &[2.0, 1.0], 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        assert!(solve_spd(&[0.0, 0.0, 0.0, 1.0], &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn dense_and_empty_series_are_certain() {
        assert_eq!(p_any(&vec![3.0; 24 * 30], 0, 4), vec![1.0; 4]);
        assert_eq!(p_any(&vec![0.0; 24 * 30], 0, 4), vec![0.0; 4]);
    }

    /// Busy from 18:00 to 23:00 on most days (a deterministic 80 %), else
    /// empty; and now and then a stray hour at 09:00.
    fn evenings(days: usize) -> Vec<f64> {
        let mut rng = crate::sim::Rng::new(5);
        (0..24 * days)
            .map(|i| {
                let hod = i % 24;
                let u = rng.uniform();
                let busy = ((18..23).contains(&hod) && u < 0.8) || (hod == 9 && u < 0.1);
                f64::from(u8::from(busy)) * 2.0
            })
            .collect()
    }

    #[test]
    fn learns_when_people_come_and_is_calibrated() {
        let v = evenings(42);
        // forecast the last 14 days from daily origins
        let (mut sum_p, mut busy, mut evening, mut night) = (0.0, 0.0, Vec::new(), Vec::new());
        for d in 0..14 {
            let o = 24 * (28 + d);
            let p = p_any(&v[..o], 0, 24);
            for (h, p) in p.iter().enumerate() {
                sum_p += p;
                busy += f64::from(u8::from(v[o + h] > 0.0));
                if (18..23).contains(&h) {
                    evening.push(*p);
                } else if (0..6).contains(&h) {
                    night.push(*p);
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean(&evening) > 0.6, "evening {}", mean(&evening));
        assert!(mean(&night) < 0.05, "night {}", mean(&night));
        // as many busy hours expected as there were
        assert!(
            (sum_p - busy).abs() / busy < 0.15,
            "expected {sum_p} busy {busy}"
        );
    }

    #[test]
    fn someone_there_now_makes_the_next_hour_likely() {
        let mut v = evenings(35);
        let n = v.len();
        // 03:00 is never busy; with someone there at the origin the next
        // hour is more likely than without
        let o = n - 24 + 3;
        v[o - 1] = 0.0;
        let quiet = p_any(&v[..o], 0, 2)[0];
        v[o - 1] = 2.0;
        let busy = p_any(&v[..o], 0, 2)[0];
        assert!(busy > 2.0 * quiet, "busy {busy} quiet {quiet}");
    }
}
