//! The `peers` command: Warden beside other Minecraft proxies, measured in one run.
//!
//! One bench backend; each round starts a fresh Warden and a fresh instance of every peer
//! in front of it, runs every mode on direct, Warden and each peer in turn (the same
//! interleaving as `run`), and ends them all. Over the rounds each figure gets a median
//! and a spread, and Warden is compared with the best peer on it.

mod figures;
mod proxies;
mod table;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::backend::Backend;
use crate::report::{Params, PathResult};
use crate::run::{modes_or_all, round, Path};
use crate::warden::Warden;
use crate::{nofile_for, params, Knobs, Mode};
use proxies::{start, version_of, Kind, Peer};

#[derive(Args)]
pub struct PeersArgs {
    /// The warden binary.
    #[arg(long)]
    warden: PathBuf,
    /// An Infrarust 1.6 binary (`bench/peers/build.sh` builds one).
    #[arg(long)]
    infrarust: Option<PathBuf>,
    /// A lazymc 0.2 binary (`bench/peers/build.sh` builds one).
    #[arg(long)]
    lazymc: Option<PathBuf>,
    /// Rounds; every figure is reported as the median and min–max over them.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Subset of modes to run.
    #[arg(long, value_enum, value_delimiter = ',')]
    modes: Vec<Mode>,
    /// Also write the Markdown table here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    #[command(flatten)]
    knobs: Knobs,
}

#[derive(Serialize)]
struct PathInfo {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}

#[derive(Serialize)]
struct PeersReport {
    started_unix: u64,
    params: Params,
    rounds: usize,
    modes: Vec<Mode>,
    paths: Vec<PathInfo>,
    figures: Vec<table::FigureOut>,
    /// `raw[round][path]`, paths in the order of `paths`.
    raw: Vec<Vec<PathResult>>,
}

/// Starts Warden and every peer for one round. A proxy that fails to start is left out
/// of that round with the reason recorded; the run goes on with the others.
async fn start_all(
    a: &PeersArgs,
    peers: &[(Kind, PathBuf)],
    backend: &Backend,
) -> (Result<Warden>, Vec<Result<Peer>>) {
    let warden = Warden::start(&a.warden, backend.addr).await;
    let mut started = Vec::new();
    for (kind, bin) in peers {
        let p = start(*kind, bin, backend.addr).await;
        if let Err(e) = &p {
            eprintln!("[{}] did not start: {e:#}", kind.name());
        }
        started.push(p);
    }
    (warden, started)
}

pub async fn run(mut a: PeersArgs) -> Result<()> {
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let modes = modes_or_all(&a.modes);
    let nofile = nofile_for(&mut a.knobs, modes.contains(&Mode::Idle))?;
    let mut peers = Vec::new();
    if let Some(b) = &a.infrarust {
        peers.push((Kind::Infrarust, b.clone()));
    }
    if let Some(b) = &a.lazymc {
        peers.push((Kind::Lazymc, b.clone()));
    }
    let mut paths = vec![
        PathInfo {
            name: "direct".into(),
            binary: None,
            version: None,
        },
        PathInfo {
            name: "warden".into(),
            binary: Some(a.warden.display().to_string()),
            version: Some(version_of(&a.warden).await),
        },
    ];
    for (kind, bin) in &peers {
        paths.push(PathInfo {
            name: kind.name().into(),
            binary: Some(bin.display().to_string()),
            version: Some(version_of(bin).await),
        });
    }
    let names: Vec<String> = paths.iter().map(|p| p.name.clone()).collect();
    let backend = Backend::start("127.0.0.1:0".parse()?).await?;
    eprintln!("bench backend on {}", backend.addr);
    let k = &a.knobs;
    let mut raw = Vec::new();
    for i in 0..a.rounds.max(1) {
        eprintln!("=== round {} of {} ===", i + 1, a.rounds.max(1));
        let mut results: Vec<PathResult> = names.iter().map(|_| PathResult::default()).collect();
        let (mut warden, mut started) = start_all(&a, &peers, &backend).await;
        let mut lanes = vec![Path::direct(&backend, k)];
        let mut slots = vec![0];
        match &mut warden {
            Ok(w) => {
                let target = w.target();
                lanes.push(Path::proxied("warden", target, w.proc(), &backend, k));
                slots.push(1);
            }
            Err(e) => {
                eprintln!("[warden] did not start: {e:#}");
                results[1].failures.insert("start".into(), format!("{e:#}"));
            }
        }
        for (j, p) in started.iter_mut().enumerate() {
            match p {
                Ok(p) => {
                    let target = p.target.clone();
                    lanes.push(Path::proxied(
                        &names[j + 2],
                        target,
                        &mut p.proc,
                        &backend,
                        k,
                    ));
                    slots.push(j + 2);
                }
                Err(e) => {
                    results[j + 2]
                        .failures
                        .insert("start".into(), format!("{e:#}"));
                }
            }
        }
        let mut lane_results: Vec<PathResult> =
            lanes.iter().map(|_| PathResult::default()).collect();
        round(&mut lanes, &mut lane_results, &modes).await;
        drop(lanes);
        for (slot, r) in slots.into_iter().zip(lane_results) {
            results[slot] = r;
        }
        // Ends every proxy (and what it started) before the next round's fresh ones.
        let mut dirs = vec![warden.as_ref().ok().map(|w| w.dir.clone())];
        dirs.extend(
            started
                .iter()
                .map(|p| p.as_ref().ok().map(|p| p.dir.clone())),
        );
        drop(started);
        drop(warden);
        for (dir, res) in dirs.into_iter().zip(&results[1..]) {
            keep_if_troubled(dir, res);
        }
        raw.push(results);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let p = params(k, nofile);
    let figures = table::aggregate(&p, &names, &raw);
    let md = table::markdown(&p, &figures, raw.len());
    let report = PeersReport {
        started_unix,
        params: p,
        rounds: raw.len(),
        modes,
        paths,
        figures,
        raw,
    };
    println!("{md}");
    print_failures(&report);
    if let Some(path) = &a.markdown {
        std::fs::write(path, &md).with_context(|| format!("write {}", path.display()))?;
        eprintln!("Markdown written to {}", path.display());
    }
    if let Some(path) = &k.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("JSON written to {}", path.display());
    }
    Ok(())
}

/// Removes a proxy's config and logs when its path ran clean; says where they are kept
/// otherwise, for the post-mortem.
fn keep_if_troubled(dir: Option<PathBuf>, res: &PathResult) {
    let Some(dir) = dir else { return };
    if res.clean() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("config and logs kept in {}", dir.display());
    }
}

/// Errors and failures per round and path, after the table: a figure missing or low
/// for a reason shows the reason.
fn print_failures(r: &PeersReport) {
    for (i, round) in r.raw.iter().enumerate() {
        for (info, res) in r.paths.iter().zip(round) {
            let at = format!("round {} {}", i + 1, info.name);
            for (what, e) in &res.failures {
                let first = e.lines().next().unwrap_or("");
                println!("- {at} {what} failed: {first}");
            }
            for (what, rate) in [("status", &res.status), ("login", &res.login)] {
                if let Some(rate) = rate.as_ref().filter(|r| r.errors > 0) {
                    let first = rate.first_error.as_deref().unwrap_or("");
                    println!("- {at} {what}: {} errors, first: {first}", rate.errors);
                }
            }
        }
    }
}

/// The `hold` command: lazymc's stand-in server. It ends with its parent (lazymc), or on
/// SIGTERM/SIGINT, whichever comes first.
pub async fn hold() -> Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets this process's parent-death signal.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
