//! `warden forecast …`: the subcommands the `warden` binary mounts. Output
//! goes to stdout so CI logs keep the tables.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};

use crate::calendar::{Calendar, EventConfig};
use crate::chain::{ChainConfig, Forecaster};
use crate::chart;
use crate::error::{Error, Result};
use crate::eval;
use crate::ingest;
use crate::series::{HourlySeries, MinuteTrace};
use crate::sim::{self, SimConfig, Trace};

/// `warden forecast <command>`.
#[derive(Debug, Subcommand)]
pub enum ForecastCommand {
    /// Rolling-origin evaluation of the model against seasonal-naive baselines.
    Eval(EvalArgs),
    /// Trace replay of static-peak, reactive, forecast and oracle provisioning.
    Simulate(SimulateArgs),
}

/// Input file formats, as in shared/data/demand.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// `AppID,Date,AvgPlayers`, hourly player counts per app.
    Steam,
    /// `player,start_time,end_time`, a session log.
    Sessions,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[arg(long, value_enum)]
    pub format: Format,
    /// Demand file.
    pub file: PathBuf,
    /// Planning quantile scored by pinball loss and coverage.
    #[arg(long, default_value_t = 0.9)]
    pub quantile: f64,
    /// TOML with `minecraft_releases = ["YYYY-MM-DD", …]` for event flags.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Also time one fit + 48-hour forecast of every series.
    #[arg(long)]
    pub time: bool,
    /// baselines_steam.csv: compare each series with the better of
    /// seasonal-naive 168 and Prophet measured there.
    #[arg(long)]
    pub baselines: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[arg(long, value_enum)]
    pub format: Format,
    /// Demand file.
    pub file: PathBuf,
    /// Steam format: replay this series (e.g. steam-730) instead of the
    /// sum of all series, each normalised to its mean.
    #[arg(long)]
    pub series: Option<String>,
    /// Steam format, sum of all series: leave out the series that do not
    /// cover the file's whole period (named on stdout). Without it, series
    /// of different periods are refused rather than summed with gaps.
    #[arg(long)]
    pub drop_partial: bool,
    /// Steam format: concurrent servers at the trace's peak.
    #[arg(long, default_value_t = 200.0)]
    pub peak: f64,
    /// Steam format: mean session length of the synthesised sessions, minutes.
    #[arg(long, default_value_t = 60.0)]
    pub session_minutes: f64,
    /// RAM of one node available to game servers, GB.
    #[arg(long, default_value_t = 32)]
    pub node_gb: u32,
    /// RAM of one game server, GB.
    #[arg(long, default_value_t = 4)]
    pub server_gb: u32,
    /// Price of a node-hour for the cost column (the provisioner reads real
    /// prices from the API; the simulator only scales node-hours).
    #[arg(long, default_value_t = 1.0)]
    pub node_price: f64,
    /// Planning quantile of the forecast policy.
    #[arg(long, default_value_t = 0.9)]
    pub quantile: f64,
    /// The forecast policy keeps a warm node for an hour only when the
    /// probability that anyone comes reaches this (sparse, scale-to-zero
    /// demand; a busy series is always above it).
    #[arg(long, default_value_t = 0.5)]
    pub p_hold: f64,
    /// Days used only as forecast history before the replay starts.
    #[arg(long, default_value_t = 14)]
    pub warmup_days: usize,
    /// Hours between refits of the forecast policy's model.
    #[arg(long, default_value_t = 6)]
    pub refit_hours: usize,
    /// Where to write the PNG chart (demand vs capacity per policy).
    #[arg(long, default_value = "forecast-simulate.png")]
    pub chart: PathBuf,
    #[arg(long)]
    pub events: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Runs a forecast subcommand, printing to stdout.
pub fn run(cmd: ForecastCommand) -> Result<()> {
    match cmd {
        ForecastCommand::Eval(a) => run_eval(&a),
        ForecastCommand::Simulate(a) => run_simulate(&a),
    }
}

fn run_simulate(a: &SimulateArgs) -> Result<()> {
    if a.server_gb == 0 || a.node_gb < a.server_gb {
        return Err(Error::Config(
            "--node-gb must hold at least one --server-gb".into(),
        ));
    }
    if !(0.5..1.0).contains(&a.quantile) {
        return Err(Error::Config("--quantile must be in [0.5, 1)".into()));
    }
    if !(a.p_hold.is_finite() && a.p_hold >= 0.0) {
        return Err(Error::Config(
            "--p-hold must be a probability (0 or more)".into(),
        ));
    }
    let cal = calendar(a.events.as_deref())?;
    let trace = match a.format {
        Format::Sessions => {
            let sessions = ingest::read_sessions(&a.file)?;
            let name = a
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sessions".into());
            Trace::from_sessions(&name, &sessions)
        }
        Format::Steam => {
            let all = ingest::read_steam(&a.file)?;
            let (curve, dropped) = steam_curve(&all, a.series.as_deref(), a.peak, a.drop_partial)?;
            if !dropped.is_empty() {
                println!(
                    "left out (shorter period than the file's): {}",
                    dropped.join(", ")
                );
            }
            Trace::synthesize(&curve, a.session_minutes, a.seed)
        }
    };
    let cfg = SimConfig {
        slots_per_node: (a.node_gb / a.server_gb) as usize,
        node_price: a.node_price,
        warmup_days: a.warmup_days,
        refit_hours: a.refit_hours.max(1),
        p_hold: a.p_hold,
        seed: a.seed,
        chain: ChainConfig {
            quantile: a.quantile,
            ..Default::default()
        },
        ..Default::default()
    };
    let t = Instant::now();
    let results = sim::simulate(&trace, &cal, &cfg)?;
    print!("{}", sim::render(&trace, &results, &cfg));
    println!("replay took {:.2} s", t.elapsed().as_secs_f64());
    let m0 = a.warmup_days * 1440;
    chart::draw(
        &a.chart,
        &chart::ChartInfo {
            trace: trace.name.clone(),
            start_minute: trace.start_minute + m0 as i64,
            slots_per_node: cfg.slots_per_node,
        },
        &trace.concurrency[m0.min(trace.concurrency.len())..],
        &results,
    )?;
    println!(
        "chart: {} (panels top to bottom: {}; black demand, red ready capacity, in server slots)",
        a.chart.display(),
        results
            .iter()
            .map(|r| r.policy.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// A minute curve from hourly Steam counts: one series or the sum of all
/// (each divided by its mean so no game dominates), linearly interpolated
/// to minutes and scaled so its peak is `peak` servers. Series of different
/// periods are not summed (the gaps would read as zero demand): an error,
/// or with `drop_partial` the short ones are left out and returned by name.
pub fn steam_curve(
    all: &[HourlySeries],
    series: Option<&str>,
    peak: f64,
    drop_partial: bool,
) -> Result<(MinuteTrace, Vec<String>)> {
    let mut picked: Vec<&HourlySeries> = match series {
        Some(name) => vec![all
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::Config(format!("no series {name}")))?],
        None => all.iter().collect(),
    };
    let start = picked.iter().map(|s| s.start_hour).min().unwrap_or(0);
    let end = picked
        .iter()
        .map(|s| s.start_hour + s.values.len() as i64)
        .max()
        .unwrap_or(0);
    let partial = |s: &HourlySeries| s.start_hour != start || s.hour_at(s.values.len()) != end;
    let dropped: Vec<String> = picked
        .iter()
        .filter(|s| partial(s))
        .map(|s| s.name.clone())
        .collect();
    if !dropped.is_empty() {
        if !drop_partial {
            let short = picked.iter().copied().filter(|s| partial(s));
            let list: Vec<String> = short
                .map(|s| {
                    format!(
                        "{} ({} → {})",
                        s.name,
                        hour_label(s.start_hour),
                        hour_label(s.hour_at(s.values.len()))
                    )
                })
                .collect();
            return Err(Error::Config(format!(
                "series cover different periods: the file spans {} → {}, but {}; summing them \
                 would count the missing hours as zero demand. Replay one with --series, or \
                 leave the short ones out with --drop-partial",
                hour_label(start),
                hour_label(end),
                list.join(", ")
            )));
        }
        picked.retain(|s| !partial(s));
    }
    let mut hourly = vec![0.0; (end - start).max(0) as usize];
    for s in &picked {
        let mean = s.values.iter().sum::<f64>() / s.values.len().max(1) as f64;
        if mean <= 0.0 {
            continue;
        }
        for (i, v) in s.values.iter().enumerate() {
            hourly[(s.start_hour - start) as usize + i] += v / mean;
        }
    }
    let top = hourly.iter().copied().fold(0.0, f64::max);
    if top <= 0.0 {
        return Err(Error::NotEnoughData("all-zero demand".into()));
    }
    let mut values = Vec::with_capacity(hourly.len() * 60);
    for i in 0..hourly.len() {
        let (a, b) = (hourly[i], *hourly.get(i + 1).unwrap_or(&hourly[i]));
        for m in 0..60 {
            values.push((a + (b - a) * m as f64 / 60.0) * peak / top);
        }
    }
    Ok((
        MinuteTrace {
            name: series.unwrap_or("steam-all").to_string(),
            start_minute: start * 60,
            values,
        },
        dropped,
    ))
}

/// `YYYY-MM-DD HH:00` (UTC) of an epoch hour, for messages and charts.
pub fn hour_label(hour: i64) -> String {
    let (y, m, d) = crate::calendar::civil_from_days(hour.div_euclid(24));
    format!("{y:04}-{m:02}-{d:02} {:02}:00", hour.rem_euclid(24))
}

fn calendar(events: Option<&Path>) -> Result<Calendar> {
    match events {
        Some(p) => Calendar::new(&EventConfig::load(p)?),
        None => Ok(Calendar::german()),
    }
}

/// Loads the hourly series of a file in either format.
pub fn load_hourly(format: Format, file: &Path) -> Result<Vec<HourlySeries>> {
    match format {
        Format::Steam => ingest::read_steam(file),
        Format::Sessions => {
            let sessions = ingest::read_sessions(file)?;
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sessions".into());
            Ok(vec![
                ingest::session_concurrency(&name, &sessions).hourly_mean()
            ])
        }
    }
}

fn run_eval(a: &EvalArgs) -> Result<()> {
    if !(0.5..1.0).contains(&a.quantile) {
        return Err(Error::Config("--quantile must be in [0.5, 1)".into()));
    }
    let cal = calendar(a.events.as_deref())?;
    let series = load_hourly(a.format, &a.file)?;
    let cfg = ChainConfig {
        quantile: a.quantile,
        ..Default::default()
    };
    let report = eval::evaluate(&series, &cal, &cfg)?;
    print!("{}", report.render(a.quantile));
    if let Some(path) = &a.baselines {
        print!("{}", compare_baselines(&report, path)?);
    }
    println!("evaluation took {:.2} s", report.seconds);
    if a.time {
        // the best of five runs: on a shared machine the others are noise
        let mut runs = (0..5)
            .map(|_| time_fit_forecast(&series, &cal, &cfg))
            .collect::<Result<Vec<f64>>>()?;
        runs.sort_by(f64::total_cmp);
        println!(
            "fit + {}-h forecast of {} series (cold: incl. validation and residual refits): best {:.3} s, median {:.3} s of 5 runs",
            cfg.horizon,
            series.len(),
            runs[0],
            runs[2]
        );
    }
    Ok(())
}

/// Per series: the model against the better of seasonal-naive 168 and
/// Prophet from a `series,snaive24_mase,snaive168_mase,…,prophet_mase,…` file.
fn compare_baselines(report: &eval::Report, path: &Path) -> Result<String> {
    use std::fmt::Write;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").trim().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| Error::Config(format!("{}: no column {name}", path.display())))
    };
    let (c168, cpro) = (col("snaive168_mase")?, col("prophet_mase")?);
    let mut out = String::new();
    let Some(model) = report.methods.first() else {
        return Ok(out);
    };
    let _ = writeln!(
        out,
        "{:<16} {:>8} {:>9} {:>9} {:>8}",
        "series", "model", "snaive168", "prophet", "÷better"
    );
    let (mut models, mut prophets, mut bests) = (Vec::new(), Vec::new(), Vec::new());
    let mut worst = (String::new(), 0.0);
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.trim().split(',').collect();
        let num = |c: usize| -> Result<f64> {
            f.get(c)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::Parse {
                    path: path.to_path_buf(),
                    line: i + 2,
                    message: "bad number".into(),
                })
        };
        let Some(r) = model
            .rows
            .iter()
            .find(|r| Some(&r.series.as_str()) == f.first())
        else {
            continue;
        };
        let (sn, pr) = (num(c168)?, num(cpro)?);
        let ratio = r.mase / sn.min(pr);
        if ratio > worst.1 {
            worst = (r.series.clone(), ratio);
        }
        models.push(r.mase);
        prophets.push(pr);
        bests.push(sn.min(pr));
        let _ = writeln!(
            out,
            "{:<16} {:>8.3} {:>9.3} {:>9.3} {:>8.2}",
            r.series, r.mase, sn, pr, ratio
        );
    }
    let _ = writeln!(
        out,
        "geo-mean MASE: model {:.3}, Prophet {:.3}, per-series best of snaive168/Prophet {:.3}; worst {} at {:.2}× the better of the two",
        crate::metrics::geometric_mean(&models),
        crate::metrics::geometric_mean(&prophets),
        crate::metrics::geometric_mean(&bests),
        worst.0,
        worst.1
    );
    Ok(out)
}

/// Wall-clock seconds for a cold fit + forecast of every series at its last
/// origin, series spread over the available cores.
pub fn time_fit_forecast(
    series: &[HourlySeries],
    cal: &Calendar,
    cfg: &ChainConfig,
) -> Result<f64> {
    let t = Instant::now();
    let done = eval::par_map(series, |s| {
        Forecaster::new(&s.values, s.start_hour, cal, cfg)
            .forecast_at(s.values.len())
            .map(|_| ())
    });
    done.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(t.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Top {
        #[command(subcommand)]
        cmd: ForecastCommand,
    }

    #[test]
    fn parses_the_documented_command_lines() {
        let t = Top::try_parse_from(["warden", "eval", "--format", "steam", "x.csv"]).unwrap();
        assert!(
            matches!(t.cmd, ForecastCommand::Eval(EvalArgs { quantile, .. }) if quantile == 0.9)
        );
        let t = Top::try_parse_from([
            "warden", "simulate", "--format", "sessions", "s.csv", "--chart", "c.png",
        ])
        .unwrap();
        match t.cmd {
            ForecastCommand::Simulate(a) => {
                assert_eq!(a.chart, PathBuf::from("c.png"));
                assert_eq!((a.node_gb, a.server_gb), (32, 4));
            }
            _ => panic!("simulate expected"),
        }
        assert!(Top::try_parse_from(["warden", "eval", "--format", "csv", "x"]).is_err());
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        let missing = EvalArgs {
            format: Format::Steam,
            file: PathBuf::from("/nonexistent/steam.csv"),
            quantile: 0.9,
            events: None,
            time: false,
            baselines: None,
        };
        assert!(matches!(
            run(ForecastCommand::Eval(missing)),
            Err(Error::Io { .. })
        ));
        let bad_q = EvalArgs {
            format: Format::Steam,
            file: PathBuf::from("x"),
            quantile: 1.5,
            events: None,
            time: false,
            baselines: None,
        };
        assert!(matches!(
            run(ForecastCommand::Eval(bad_q)),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn summing_series_of_different_periods_is_refused() {
        let mk = |name: &str, start: i64, n: usize| HourlySeries {
            name: name.into(),
            start_hour: start,
            values: vec![10.0; n],
        };
        let all = [mk("a", 1000, 48), mk("b", 1000, 48), mk("c", 1010, 38)];
        let err = steam_curve(&all, None, 20.0, false).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Config(_)));
        assert!(
            msg.contains("c (") && msg.contains("--drop-partial"),
            "{msg}"
        );
        assert!(!msg.contains("a ("), "{msg}");
        let (curve, dropped) = steam_curve(&all, None, 20.0, true).unwrap();
        assert_eq!(dropped, vec!["c".to_string()]);
        assert_eq!(curve.values.len(), 48 * 60);
        // a and b are flat: the sum is flat at the peak
        assert!(curve.values.iter().all(|v| (v - 20.0).abs() < 1e-9));
        // one series, or series of one period, need no flag
        assert!(steam_curve(&all, Some("c"), 20.0, false).is_ok());
        assert!(steam_curve(&all[..2], None, 20.0, false).is_ok());
        assert_eq!(hour_label(0), "1970-01-01 00:00");
    }
}
