//! From rounds of raw results to the published figures: per figure and path the median
//! and spread (min–max) over rounds, the best peer, and Warden against it — direction
//! aware, since more is better for rates and less for latency, memory and CPU.

use std::fmt::Write as _;

use serde::Serialize;

use super::figures::figures;
use crate::report::{Params, PathResult};

#[derive(Serialize, Debug, Clone)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// One value per round that measured it, in round order.
    pub values: Vec<f64>,
}

impl Spread {
    fn of(values: Vec<f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[v.len() - 1],
            values,
        })
    }
}

#[derive(Serialize, Debug)]
pub struct FigureOut {
    pub key: &'static str,
    pub label: String,
    pub higher_is_better: bool,
    /// Per path (in the run's path order): the figure over rounds; None where unmeasured.
    pub cells: Vec<(String, Option<Spread>)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_peer: Option<String>,
    /// Warden's median ÷ the best peer's median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warden_vs_best_peer: Option<f64>,
    /// Warden's median − the best peer's median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warden_minus_best_peer: Option<f64>,
    /// Whether Warden is ahead, given the figure's direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warden_ahead: Option<bool>,
}

/// `rounds[i][j]` is path `j`'s results in round `i`; `names[j]` names path `j`, path 0
/// being direct and path 1 Warden.
pub fn aggregate(p: &Params, names: &[String], rounds: &[Vec<PathResult>]) -> Vec<FigureOut> {
    let mut out = Vec::new();
    for f in figures(p) {
        let cells: Vec<(String, Option<Spread>)> = names
            .iter()
            .enumerate()
            .map(|(j, name)| {
                // A difference from direct means nothing on the direct path itself.
                let vals = if j == 0 && f.key.starts_with("echo_added") {
                    Vec::new()
                } else {
                    rounds
                        .iter()
                        .filter_map(|r| Some((f.get)(r.get(j)?, r.first()?)).flatten())
                        .collect()
                };
                (name.clone(), Spread::of(vals))
            })
            .collect();
        let better = |a: f64, b: f64| if f.higher_is_better { a > b } else { a < b };
        let mut best: Option<(&str, f64)> = None;
        for (name, cell) in cells.iter().skip(2) {
            if let Some(s) = cell {
                if best.is_none_or(|(_, b)| better(s.median, b)) {
                    best = Some((name, s.median));
                }
            }
        }
        let warden = cells.get(1).and_then(|(_, c)| c.as_ref()).map(|s| s.median);
        let ratio = match (warden, best) {
            (Some(w), Some((_, b))) if b > 0.0 && w >= 0.0 => Some(w / b),
            _ => None,
        };
        let diff = warden.zip(best).map(|(w, (_, b))| w - b);
        let ahead = warden.zip(best).map(|(w, (_, b))| w == b || better(w, b));
        out.push(FigureOut {
            key: f.key,
            label: f.label,
            higher_is_better: f.higher_is_better,
            best_peer: best.map(|(n, _)| n.to_string()),
            warden_vs_best_peer: ratio,
            warden_minus_best_peer: diff,
            warden_ahead: ahead,
            cells,
        });
    }
    out
}

/// 17253.4 → "17,253" (with `decimals` after the point).
fn num(v: f64, decimals: usize) -> String {
    let s = format!("{:.decimals$}", v.abs());
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    let sign = if v < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "−"
    } else {
        ""
    };
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A difference with its sign: "+26.5", "−1.0".
fn signed(v: f64, decimals: usize) -> String {
    if v >= 0.0 {
        format!("+{}", num(v, decimals))
    } else {
        num(v, decimals)
    }
}

fn decimals_of(key: &str, p: &Params) -> usize {
    figures(p)
        .iter()
        .find(|f| f.key == key)
        .map_or(1, |f| f.decimals)
}

/// The table: one row per figure with any value, cells "median (min–max)".
pub fn markdown(p: &Params, figs: &[FigureOut], rounds: usize) -> String {
    let names: Vec<&str> = figs
        .first()
        .map(|f| f.cells.iter().map(|(n, _)| n.as_str()).collect())
        .unwrap_or_default();
    let mut t = String::from("| figure |");
    for n in &names {
        let _ = write!(t, " {n} |");
    }
    t.push_str(" best peer | Warden ÷ best peer |\n|---|");
    t.push_str(&"---:|".repeat(names.len() + 2));
    t.push('\n');
    for f in figs {
        if f.cells.iter().all(|(_, c)| c.is_none()) {
            continue;
        }
        let d = decimals_of(f.key, p);
        let _ = write!(t, "| {} |", f.label);
        for (_, c) in &f.cells {
            let cell = match c {
                Some(s) if rounds > 1 => {
                    format!("{} ({}–{})", num(s.median, d), num(s.min, d), num(s.max, d))
                }
                Some(s) => num(s.median, d),
                None => "–".into(),
            };
            let _ = write!(t, " {cell} |");
        }
        let best = f.best_peer.as_deref().unwrap_or("–");
        let side = |a: bool| if a { "ahead" } else { "behind" };
        // A ratio to a value at or below zero (a peer's added latency within noise of
        // direct) means nothing; the difference does.
        let ratio = match (
            f.warden_vs_best_peer,
            f.warden_minus_best_peer,
            f.warden_ahead,
        ) {
            (Some(r), _, Some(a)) => format!("{r:.2}× ({})", side(a)),
            (None, Some(diff), Some(a)) => format!("{} ({})", signed(diff, d), side(a)),
            _ => "–".into(),
        };
        let _ = writeln!(t, " {best} | {ratio} |");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::echo::Echo;
    use crate::modes::Rate;

    fn params() -> Params {
        Params {
            duration_secs: 1,
            concurrency: 4,
            streams: 4,
            bulk_mib: 1,
            echo_trips: 10,
            sessions: 10,
            nofile_limit: 1024,
            cpus: 2,
        }
    }

    fn with(status: f64, p50: f64, login_cpu: f64) -> PathResult {
        let mut r = PathResult {
            status: Some(Rate {
                ok: 100,
                errors: 0,
                secs: 1.0,
                per_sec: status,
                workers: 4,
                first_error: None,
            }),
            login: Some(Rate {
                ok: 1000,
                errors: 0,
                secs: 1.0,
                per_sec: 1000.0,
                workers: 4,
                first_error: None,
            }),
            echo: Some(Echo {
                trips: 10,
                msg_bytes: 64,
                p50_us: p50,
                p99_us: p50 * 2.0,
                p999_us: p50 * 3.0,
                max_us: p50 * 4.0,
                mean_us: p50,
            }),
            ..PathResult::default()
        };
        r.proxy_cpu_secs.insert("login".into(), login_cpu);
        r
    }

    #[test]
    fn median_and_spread() {
        let s = Spread::of(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(vec![1.0, 4.0]).unwrap().median, 2.5);
        assert!(Spread::of(vec![f64::NAN]).is_none());
    }

    #[test]
    fn best_peer_respects_direction() {
        let names: Vec<String> = ["direct", "warden", "a", "b"].map(String::from).into();
        let round = vec![
            with(100.0, 50.0, 0.0),
            with(90.0, 60.0, 0.1),
            with(80.0, 55.0, 0.05),
            with(95.0, 70.0, 0.2),
        ];
        let figs = aggregate(&params(), &names, &[round]);
        let get = |k: &str| figs.iter().find(|f| f.key == k).unwrap();
        let status = get("status_per_sec");
        assert_eq!(status.best_peer.as_deref(), Some("b"));
        assert_eq!(status.warden_ahead, Some(false));
        let p50 = get("echo_added_p50_us");
        assert!(
            p50.cells[0].1.is_none(),
            "no added latency on the direct path"
        );
        assert_eq!(p50.best_peer.as_deref(), Some("a"));
        assert_eq!(p50.warden_vs_best_peer, Some(2.0));
        let cpu = get("cpu_us_per_login");
        assert_eq!(cpu.best_peer.as_deref(), Some("a"));
        assert_eq!(cpu.warden_ahead, Some(false));
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(num(17253.4, 0), "17,253");
        assert_eq!(num(999.0, 1), "999.0");
        assert_eq!(num(-1234.5, 1), "−1,234.5");
    }
}
