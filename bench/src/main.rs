//! warden-bench: measures the direct path and the path through Warden in one run, so every
//! ratio compares numbers taken on the same machine, in the same minute.
//!
//! `run` owns the whole setup (backend, Warden, every mode); `peers` does the same with
//! other proxies beside Warden, over several rounds; the single-mode commands point at any
//! Minecraft endpoint for direct measurements.

mod alloc;
mod backend;
mod child;
mod held;
mod link;
mod modes;
mod peers;
mod proto;
mod report;
mod run;
mod sys;
mod wake;
mod warden;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use backend::Backend;
use modes::bulk::Direction;
use proto::Target;
use report::{Params, PathResult, Report};

#[derive(Parser)]
#[command(name = "warden-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every mode against the bench's own backend: direct, then through Warden if given.
    Run(RunArgs),
    /// `run`'s modes on direct, Warden and other proxies (Infrarust, lazymc) in one run,
    /// over several rounds: medians, spread, and Warden against the best peer.
    Peers(peers::PeersArgs),
    /// Server-list pings per second against an endpoint.
    Status(Single),
    /// Logins (handshake + Login Start until the server answers) per second.
    Login(Single),
    /// Bulk throughput; needs the bench backend (`backend`) behind the endpoint.
    Bulk(Single),
    /// Echo round-trip latency; needs the bench backend behind the endpoint.
    Echo(Single),
    /// Opens idle sessions and, with --pid, reports that process's RSS per session.
    Idle(Single),
    /// Serves only the bench backend, to put any proxy in front of it by hand.
    Backend {
        #[arg(long, default_value = "127.0.0.1:25566")]
        listen: SocketAddr,
        /// Append `listening`/`login` timestamps here (what `wake` reads).
        #[arg(long)]
        events: Option<PathBuf>,
    },
    /// Memory per player waiting in the anteroom (Warden manages a server that never starts).
    Held {
        #[arg(long)]
        warden: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        guests: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The edge↔node QUIC link against a TCP relay over the same delay (in-process).
    Link(link::LinkArgs),
    /// Sleeps until terminated: the "server" lazymc starts, while the bench backend
    /// serves (lazymc only needs a process to manage).
    #[command(hide = true)]
    Hold,
    /// Wake overhead: Warden manages this binary as a sleeping server and wakes it per join.
    Wake {
        /// The warden binary.
        #[arg(long)]
        warden: PathBuf,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct Knobs {
    /// Length of each rate mode (status, login), per path.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// Concurrent workers in the rate modes.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Parallel streams in the bulk modes.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// MiB moved per bulk measurement (split over the streams).
    #[arg(long, default_value_t = 1024)]
    bulk_mib: u64,
    #[arg(long, default_value_t = 5000)]
    echo_trips: usize,
    /// Idle sessions held for the RSS measurement.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Status,
    Login,
    Bulk,
    Echo,
    Idle,
}

#[derive(Args)]
struct RunArgs {
    /// The warden binary; without it only the direct path is measured.
    #[arg(long)]
    warden: Option<PathBuf>,
    /// Subset of modes to run.
    #[arg(long, value_enum, value_delimiter = ',')]
    modes: Vec<Mode>,
    #[command(flatten)]
    knobs: Knobs,
}

#[derive(Args)]
struct Single {
    /// HOST:PORT to connect to.
    #[arg(long)]
    target: String,
    /// Handshake address (what a router routes on); defaults to the target's host.
    #[arg(long)]
    server_host: Option<String>,
    /// Player name for `login` (the bench backend answers `ack` with one byte).
    #[arg(long, default_value = "ack")]
    name: String,
    /// For `idle`: the process whose RSS to report.
    #[arg(long)]
    pid: Option<u32>,
    /// For `bulk`: which way the bytes flow.
    #[arg(long, value_enum, default_value = "upload")]
    direction: DirArg,
    #[command(flatten)]
    knobs: Knobs,
}

#[derive(Clone, Copy, ValueEnum)]
enum DirArg {
    Upload,
    Download,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `{:#}` rather than anyhow's Debug: the chain (and Warden's stderr) without a
    // backtrace of the bench itself when RUST_BACKTRACE happens to be set.
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Run(a) => run::run(a).await,
            Cmd::Peers(a) => peers::run(a).await,
            Cmd::Hold => peers::hold().await,
            Cmd::Held {
                warden,
                guests,
                json,
            } => held::run(&warden, guests, json).await,
            Cmd::Wake {
                warden,
                rounds,
                json,
            } => wake::run(&warden, rounds, json).await,
            Cmd::Backend { listen, events } => {
                let b = Backend::start_logged(listen, events.as_deref()).await?;
                eprintln!(
                    "bench backend on {} (names: ack, echo, sink, source)",
                    b.addr
                );
                tokio::signal::ctrl_c().await?;
                eprintln!("{:?}", b.stats.snapshot());
                Ok(())
            }
            Cmd::Link(a) => link::run(a).await,
            Cmd::Status(s) => single(Mode::Status, s).await,
            Cmd::Login(s) => single(Mode::Login, s).await,
            Cmd::Bulk(s) => single(Mode::Bulk, s).await,
            Cmd::Echo(s) => single(Mode::Echo, s).await,
            Cmd::Idle(s) => single(Mode::Idle, s).await,
        }
    })
}

fn params(k: &Knobs, nofile: u64) -> Params {
    Params {
        duration_secs: k.duration_secs,
        concurrency: k.concurrency,
        streams: k.streams,
        bulk_mib: k.bulk_mib,
        echo_trips: k.echo_trips,
        sessions: k.sessions,
        nofile_limit: nofile,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// Every idle session costs two descriptors in this process (client and backend side) and
/// two in Warden, which inherits our limit. Raises the limit, or, where the hard limit
/// cannot move (no CAP_SYS_RESOURCE), shrinks the session count to what fits.
fn nofile_for(k: &mut Knobs, idle: bool) -> Result<u64> {
    let want = k.sessions as u64 * 2 + FD_HEADROOM;
    let got = sys::raise_nofile(want)?;
    if got < want && idle {
        let fit = (got.saturating_sub(FD_HEADROOM) / 2) as usize;
        eprintln!(
            "warning: RLIMIT_NOFILE is {got} and cannot be raised to {want}; \
             idle mode holds {fit} sessions instead of {}",
            k.sessions
        );
        k.sessions = fit;
    }
    Ok(got)
}

/// Descriptors besides the sessions: listeners, runtime, Warden's metrics and upgrade
/// sockets, and sessions of earlier modes still closing.
const FD_HEADROOM: u64 = 512;

fn emit(report: &Report, json: &Option<PathBuf>) -> Result<()> {
    println!("{}", report.markdown());
    if let Some(path) = json {
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("JSON written to {}", path.display());
    }
    Ok(())
}

async fn single(mode: Mode, mut s: Single) -> Result<()> {
    let nofile = nofile_for(&mut s.knobs, mode == Mode::Idle)?;
    let k = &s.knobs;
    let addr = tokio::net::lookup_host(&s.target)
        .await
        .with_context(|| format!("resolve {}", s.target))?
        .next()
        .with_context(|| format!("{} resolves to nothing", s.target))?;
    let host = match &s.server_host {
        Some(h) => h.clone(),
        None => s
            .target
            .rsplit_once(':')
            .map_or(s.target.as_str(), |(h, _)| h)
            .to_string(),
    };
    let target = Target { addr, host };
    let mut res = PathResult::default();
    let dur = Duration::from_secs(k.duration_secs);
    match mode {
        Mode::Status => res.status = Some(modes::status::run(&target, k.concurrency, dur).await),
        Mode::Login => {
            res.login = Some(modes::login::run(&target, k.concurrency, dur, &s.name).await)
        }
        Mode::Bulk => {
            let dir = match s.direction {
                DirArg::Upload => Direction::Upload,
                DirArg::Download => Direction::Download,
            };
            let b = modes::bulk::run(&target, dir, k.streams, k.bulk_mib * 1024 * 1024).await?;
            match dir {
                Direction::Upload => res.bulk_upload = Some(b),
                Direction::Download => res.bulk_download = Some(b),
            }
        }
        Mode::Echo => res.echo = Some(modes::echo::run(&target, k.echo_trips).await?),
        Mode::Idle => {
            let i = modes::idle::run(&target, k.sessions, s.pid, None).await?;
            if let Some(kib) = i.kib_per_session {
                eprintln!("RSS of pid {:?}: {kib:.2} KiB per idle session", s.pid);
            }
            res.idle = Some(i);
        }
    }
    let report = Report {
        params: params(k, nofile),
        target: Some(format!("{} ({})", s.target, target.host)),
        warden_binary: None,
        direct: res,
        warden: None,
        backend: None,
    };
    emit(&report, &k.json)
}
