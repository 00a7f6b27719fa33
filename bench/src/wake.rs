//! The `wake` command: how much longer than the server's own start a waking join takes.
//!
//! Warden manages this bench binary as a *process* server (`warden-bench backend --events
//! FILE`), puts it to sleep after one idle second, and wakes it for each join. The backend
//! writes when it started listening (the moment it was ready) and when a login arrived.
//! The gap between the two is Warden's wake overhead: noticing readiness plus replaying the
//! held player's handshake. lazymc polls readiness every 2 s; the target is ≤ 200 ms.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::modes::login::login_once;
use crate::warden::{free_port, unique_dir, Warden};

const HOST: &str = "wake.test";

#[derive(Serialize, Debug)]
pub struct WakeReport {
    pub rounds: usize,
    /// Backend listening → the held player's Login Start arriving at it, per round.
    pub overhead_ms: Vec<f64>,
    /// The player's whole join, from connect to the backend's first byte, per round.
    pub join_ms: Vec<f64>,
    /// For scale: a login to the already-running server through Warden.
    pub warm_join_ms: f64,
}

pub async fn run(bin: &Path, rounds: usize, json: Option<PathBuf>) -> Result<()> {
    let exe = std::env::current_exe().context("locating warden-bench")?;
    let dir = unique_dir()?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let events = dir.join("backend-events.log");
    let backend: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let command = [
        exe.display().to_string(),
        "backend".into(),
        "--listen".into(),
        backend.to_string(),
        "--events".into(),
        events.display().to_string(),
    ];
    let warden = Warden::start_with(bin, dir.clone(), HOST, |listen, dir| {
        config(listen, dir, backend, &command, &data)
    })
    .await?;
    let target = warden.target();

    let mut report = WakeReport {
        rounds,
        overhead_ms: Vec::new(),
        join_ms: Vec::new(),
        warm_join_ms: 0.0,
    };
    for round in 0..rounds {
        asleep(backend).await?;
        let seen = lines(&events)?.len();
        let t0 = Instant::now();
        login_once(&target, "ack")
            .await
            .with_context(|| format!("round {round}: waking join"))?;
        let join = t0.elapsed();
        if round == 0 {
            let t1 = Instant::now();
            login_once(&target, "ack").await?;
            report.warm_join_ms = ms(t1.elapsed());
        }
        let new = lines(&events)?.split_off(seen);
        let listening = stamp(&new, "listening").context("the backend never logged listening")?;
        let login = new
            .iter()
            .filter_map(|l| l.strip_prefix("login ")?.parse::<u128>().ok())
            .find(|&t| t >= listening)
            .context("the held login never reached the backend")?;
        let overhead = Duration::from_nanos((login - listening) as u64);
        eprintln!(
            "[wake] round {round}: join {:.0} ms, overhead {:.1} ms",
            ms(join),
            ms(overhead)
        );
        report.overhead_ms.push(ms(overhead));
        report.join_ms.push(ms(join));
    }
    print_table(&report);
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    drop(warden);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn config(
    listen: SocketAddr,
    dir: &Path,
    backend: SocketAddr,
    command: &[String],
    data: &Path,
) -> String {
    let command = command
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[edge]
listen = "{listen}"
upgrade_sock = "{d}/upgrade.sock"
grace_period = "2s"

[metrics]
listen = ""

[store]
path = "{d}/store"

[archive]
path = "{d}/archive"

[[servers]]
id = "wake"
hosts = ["{HOST}"]
backend = "{backend}"
sleep_after = "1s"
start_timeout = "30s"
stop_timeout = "5s"
runtime = {{ kind = "process", command = [{command}], dir = "{data}" }}
"#,
        d = dir.display(),
        data = data.display(),
    )
}

/// Waits until the backend process is gone and Warden has had a moment to record it, so
/// every round is a full wake from sleep.
async fn asleep(backend: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(backend).await.is_ok() {
        if Instant::now() > deadline {
            bail!("the server never went to sleep");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(())
}

fn lines(path: &Path) -> Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

fn stamp(lines: &[String], what: &str) -> Option<u128> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(what)?.trim().parse().ok())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_table(r: &WakeReport) {
    let stats = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let median = s.get(s.len() / 2).copied().unwrap_or(0.0);
        (median, s.last().copied().unwrap_or(0.0))
    };
    let (om, ox) = stats(&r.overhead_ms);
    let (jm, jx) = stats(&r.join_ms);
    println!("| wake ({} rounds) | median | max |", r.rounds);
    println!("|---|---:|---:|");
    println!("| backend ready → held login arrives (ms) | {om:.1} | {ox:.1} |");
    println!("| whole waking join (ms) | {jm:.0} | {jx:.0} |");
    println!(
        "| join to the running server, for scale (ms) | {:.1} | |",
        r.warm_join_ms
    );
}
