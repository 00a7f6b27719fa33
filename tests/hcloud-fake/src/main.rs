//! `warden-hcloud-fake`: the fake Hetzner Cloud API as a process, for end-to-end tests
//! that run real `warden` nodes as its servers. Prints `listening http://ADDR/v1` once
//! bound; on SIGTERM, SIGINT or (with --exit-with-parent) its parent's exit it ends every
//! machine before exiting.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use warden_hcloud_fake::{Config, Fake, Faults, MachinesConfig, Snapshot};

#[derive(Parser, Debug)]
#[command(about = "A local fake of the Hetzner Cloud API whose servers run warden")]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The API token clients must send as a Bearer token.
    #[arg(long, env = "HCLOUD_TOKEN")]
    token: String,
    /// Length of a billed hour in seconds (shorter for time-scaled tests).
    #[arg(long, default_value_t = 3600.0)]
    hour_secs: f64,
    /// Time from create until a server is running and its machine starts.
    #[arg(long, default_value_t = 1000)]
    boot_delay_ms: u64,
    /// The program each server runs: `<warden-bin> run --config <dir>/<name>/warden.toml`.
    #[arg(long, requires = "machines_dir")]
    warden_bin: Option<PathBuf>,
    /// Where each server's machine directory `<name>/` goes.
    #[arg(long, requires = "warden_bin")]
    machines_dir: Option<PathBuf>,
    /// Between SIGTERM and SIGKILL when a machine is destroyed.
    #[arg(long, default_value_t = 5000)]
    stop_grace_ms: u64,
    /// A snapshot to hold, `ID` or `ID:key=value,…` (repeatable; the last given is the
    /// newest). Without any: 1001 labelled warden-node=1.
    #[arg(long = "snapshot", value_name = "ID[:KEY=VALUE,...]")]
    snapshots: Vec<Snapshot>,
    /// Initial faults, as the JSON `POST /_fake/faults` takes.
    #[arg(long)]
    faults: Option<String>,
    /// Shut down (ending the machines) when the parent process exits.
    #[arg(long)]
    exit_with_parent: bool,
}

fn config(args: &Args) -> Result<Config, String> {
    if !(args.hour_secs > 0.0 && args.hour_secs.is_finite()) {
        return Err("--hour-secs must be a positive number".into());
    }
    let mut cfg = Config::new(&args.token);
    cfg.hour = Duration::from_secs_f64(args.hour_secs);
    cfg.boot_delay = Duration::from_millis(args.boot_delay_ms);
    cfg.stop_grace = Duration::from_millis(args.stop_grace_ms);
    if !args.snapshots.is_empty() {
        cfg.snapshots = args.snapshots.clone();
    }
    if let (Some(bin), Some(dir)) = (&args.warden_bin, &args.machines_dir) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        // Machines run in their own directories: a relative binary path must not move.
        let bin = if bin.components().count() > 1 {
            bin.canonicalize()
                .map_err(|e| format!("{}: {e}", bin.display()))?
        } else {
            bin.clone()
        };
        cfg.machines = Some(MachinesConfig {
            warden_bin: bin,
            dir,
        });
    }
    Ok(cfg)
}

async fn run(args: Args) -> Result<(), String> {
    let cfg = config(&args)?;
    let fake = Fake::with_faults(cfg, Faults::default());
    if let Some(f) = &args.faults {
        let v: serde_json::Value = serde_json::from_str(f).map_err(|e| format!("--faults: {e}"))?;
        fake.set_faults(&v).map_err(|e| format!("--faults: {e}"))?;
    }
    let parent = nix::unistd::getppid();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", args.listen))?;
    let url = fake.serve(listener).map_err(|e| e.to_string())?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {url}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let orphaned = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if args.exit_with_parent && nix::unistd::getppid() != parent {
                return;
            }
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = orphaned => {}
    }
    fake.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden-hcloud-fake: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden-hcloud-fake: {e}");
            ExitCode::FAILURE
        }
    }
}
