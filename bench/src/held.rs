//! The `held` command: memory per player waiting in the anteroom, at 10k players.
//!
//! Warden manages a server that never becomes ready (its command is `sleep`), so every
//! 1.21 (protocol 767) join goes to the anteroom and stays. Each bench guest completes the
//! offline login, acknowledges it, and answers the anteroom's keep-alives like a client
//! on the "Joining world…" screen. Warden's RSS is read before, once everyone waits, after
//! a keep-alive round, and after they leave.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use warden_wire::{FrameDecoder, PacketReader, PacketWriter};

use crate::proto::{connect, read_frame, write_all, Target, IO_TIMEOUT};
use crate::sys::vmrss_kib;
use crate::warden::{free_port, unique_dir, Warden};

const HOST: &str = "held.test";
const OPEN_CONCURRENCY: usize = 128;
/// Login state, clientbound Login Success; serverbound Login Acknowledged (766+).
const LOGIN_SUCCESS: i32 = 0x02;
const LOGIN_ACKNOWLEDGED: i32 = 0x03;
/// Configuration keep-alive, both directions (766+).
const KEEP_ALIVE: i32 = 0x04;
/// The anteroom sends a keep-alive every 10 s; a guest hears nothing else meanwhile.
const QUIET: Duration = Duration::from_secs(25);

#[derive(Serialize, Debug)]
pub struct HeldReport {
    pub guests: usize,
    pub waiting: usize,
    pub open_secs: f64,
    pub rss_before_kib: u64,
    pub rss_waiting_kib: u64,
    pub rss_after_keepalives_kib: u64,
    pub rss_after_leave_kib: u64,
    pub kib_per_guest: f64,
    pub keepalives_answered: usize,
    pub still_waiting_at_end: usize,
    pub first_error: Option<String>,
}

pub async fn run(
    bin: &std::path::Path,
    guests: usize,
    json: Option<std::path::PathBuf>,
) -> Result<()> {
    crate::sys::raise_nofile(guests as u64 * 2 + 512)?;
    let dir = unique_dir()?;
    std::fs::create_dir_all(dir.join("data"))?;
    let never: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let warden = Warden::start_with(bin, dir.clone(), HOST, |listen, d| {
        format!(
            r#"[edge]
listen = "{listen}"
upgrade_sock = "{d}/upgrade.sock"
grace_period = "2s"

[edge.limits]
status_per_second = 1000000
login_per_second = 1000000
connections_per_bucket = 1000000
max_connections = 1000000

[metrics]
listen = ""

[store]
path = "{d}/store"

[archive]
path = "{d}/archive"

[[servers]]
id = "held"
hosts = ["{HOST}"]
backend = "{never}"
start_timeout = "1h"
runtime = {{ kind = "process", command = ["sleep", "3600"], dir = "{d}/data" }}
"#,
            d = d.display()
        )
    })
    .await?;
    let pid = warden.pid();
    let target = warden.target();
    let rss_before = vmrss_kib(pid)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let waiting = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let sem = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..guests {
        let permit = sem.clone().acquire_owned().await?;
        let (t, stop, waiting, answered) = (
            target.clone(),
            stop_rx.clone(),
            waiting.clone(),
            answered.clone(),
        );
        tasks.spawn(async move { guest(t, i, permit, stop, waiting, answered).await });
    }
    // Everyone logged in and acknowledged, or failed.
    let deadline = Instant::now() + Duration::from_secs(120);
    while waiting.load(Ordering::Relaxed) + tasks_failed(&tasks, guests) < guests
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_waiting = vmrss_kib(pid)?;
    let n_waiting = waiting.load(Ordering::Relaxed);
    eprintln!("[held] {n_waiting} of {guests} waiting after {open_secs:.1} s; a keep-alive round…");
    tokio::time::sleep(Duration::from_secs(21)).await;
    let rss_keepalive = vmrss_kib(pid)?;
    let still = waiting.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            first_error.get_or_insert_with(|| format!("{e:#}"));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = vmrss_kib(pid)?;
    let report = HeldReport {
        guests,
        waiting: n_waiting,
        open_secs,
        rss_before_kib: rss_before,
        rss_waiting_kib: rss_waiting,
        rss_after_keepalives_kib: rss_keepalive,
        rss_after_leave_kib: rss_after,
        kib_per_guest: (rss_keepalive as f64 - rss_before as f64) / n_waiting.max(1) as f64,
        keepalives_answered: answered.load(Ordering::Relaxed),
        still_waiting_at_end: still,
        first_error,
    };
    println!(
        "| anteroom, {} guests (protocol 767) | value |",
        report.guests
    );
    println!("|---|---:|");
    println!("| waiting after login + ack | {} |", report.waiting);
    println!(
        "| still waiting after a keep-alive round (21 s) | {} |",
        report.still_waiting_at_end
    );
    println!("| keep-alives answered | {} |", report.keepalives_answered);
    println!("| Warden RSS before / waiting / after keep-alives / after leaving (MiB) | {:.1} / {:.1} / {:.1} / {:.1} |",
        report.rss_before_kib as f64 / 1024.0, report.rss_waiting_kib as f64 / 1024.0,
        report.rss_after_keepalives_kib as f64 / 1024.0, report.rss_after_leave_kib as f64 / 1024.0);
    println!(
        "| RSS per waiting player (KiB) | {:.2} |",
        report.kib_per_guest
    );
    if let Some(e) = &report.first_error {
        println!("first error: {e}");
    }
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    drop(warden);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Guests whose task already ended (all of them failed: a waiting guest never ends early).
fn tasks_failed(tasks: &tokio::task::JoinSet<Result<()>>, guests: usize) -> usize {
    guests - tasks.len()
}

async fn guest(
    t: Target,
    i: usize,
    permit: tokio::sync::OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
    waiting: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
) -> Result<()> {
    let mut s = connect(t.addr).await?;
    write_all(&mut s, &t.login_prefix(&format!("h{i}")), IO_TIMEOUT).await?;
    let mut dec = FrameDecoder::new();
    let first = read_frame(&mut s, &mut dec, IO_TIMEOUT).await?;
    let id = PacketReader::new(&first).varint()?;
    anyhow::ensure!(
        id == LOGIN_SUCCESS,
        "expected Login Success, got packet {id:#x}"
    );
    write_all(
        &mut s,
        &PacketWriter::new(LOGIN_ACKNOWLEDGED).into_frame(),
        IO_TIMEOUT,
    )
    .await?;
    drop(permit);
    waiting.fetch_add(1, Ordering::Relaxed);
    let result = async {
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut s, &mut dec, QUIET) => f?,
                _ = stop.changed() => return Ok(()),
            };
            let mut r = PacketReader::new(&frame);
            if r.varint()? == KEEP_ALIVE {
                let v = r.i64()?;
                write_all(
                    &mut s,
                    &PacketWriter::new(KEEP_ALIVE).i64(v).into_frame(),
                    IO_TIMEOUT,
                )
                .await?;
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    .await;
    waiting.fetch_sub(1, Ordering::Relaxed);
    result
}
