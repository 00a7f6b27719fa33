//! The `run` command: one backend, optionally one Warden, and every mode on both paths,
//! interleaved so that direct and proxied numbers see the same machine state.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::backend::{Backend, Stats};
use crate::modes::{self, bulk::Direction};
use crate::proto::Target;
use crate::report::{PathResult, Report};
use crate::warden::{Warden, BENCH_HOST};
use crate::{emit, nofile_for, params, sys, Knobs, Mode, RunArgs};

/// Context one path's measurements need.
struct Path<'a> {
    name: &'static str,
    target: Target,
    /// Warden's pid, when this path goes through it.
    pid: Option<u32>,
    backend: Option<Arc<Stats>>,
    knobs: &'a Knobs,
}

impl Path<'_> {
    /// Runs one mode and charges it the CPU it cost: the bench's own (client and backend)
    /// and, on the proxied path, Warden's.
    async fn cpu<T>(&self, res: &mut PathResult, key: &str, f: impl Future<Output = T>) -> T {
        let me = std::process::id();
        let bench_before = sys::cpu_secs(me).ok();
        let warden_before = self.pid.and_then(|p| sys::cpu_secs(p).ok());
        let out = f.await;
        if let (Some(b), Ok(a)) = (bench_before, sys::cpu_secs(me)) {
            res.bench_cpu_secs.insert(key.to_string(), a - b);
        }
        if let (Some(p), Some(b)) = (self.pid, warden_before) {
            if let Ok(a) = sys::cpu_secs(p) {
                res.warden_cpu_secs.insert(key.to_string(), a - b);
            }
        }
        out
    }

    async fn mode(&self, mode: Mode, res: &mut PathResult) {
        let k = self.knobs;
        let t = &self.target;
        let dur = Duration::from_secs(k.duration_secs);
        let total = k.bulk_mib * 1024 * 1024;
        eprintln!("[{}] {}", self.name, mode_name(mode));
        let before = self.backend.as_ref().map(|b| b.snapshot());
        match mode {
            Mode::Status => {
                let r = self.cpu(res, "status", modes::status::run(t, k.concurrency, dur));
                res.status = Some(r.await);
            }
            Mode::Login => {
                let r = self.cpu(
                    res,
                    "login",
                    modes::login::run(t, k.concurrency, dur, "ack"),
                );
                res.login = Some(r.await);
            }
            Mode::Bulk => {
                let up = self.cpu(
                    res,
                    "bulk_upload",
                    modes::bulk::run(t, Direction::Upload, k.streams, total),
                );
                match up.await {
                    Ok(b) => res.bulk_upload = Some(b),
                    Err(e) => fail(res, "bulk_upload", e),
                }
                match modes::bulk::run(t, Direction::Upload, 1, total).await {
                    Ok(b) => res.bulk_upload_single = Some(b),
                    Err(e) => fail(res, "bulk_upload_single", e),
                }
                let down = self.cpu(
                    res,
                    "bulk_download",
                    modes::bulk::run(t, Direction::Download, k.streams, total),
                );
                match down.await {
                    Ok(b) => res.bulk_download = Some(b),
                    Err(e) => fail(res, "bulk_download", e),
                }
            }
            Mode::Echo => match modes::echo::run(t, k.echo_trips).await {
                Ok(e) => res.echo = Some(e),
                Err(e) => fail(res, "echo", e),
            },
            Mode::Idle => {
                let r = modes::idle::run(t, k.sessions, self.pid, self.backend.clone());
                match r.await {
                    Ok(i) => res.idle = Some(i),
                    Err(e) => fail(res, "idle", e),
                }
            }
        }
        // What reached the backend: equal to the client's count when the path forwards
        // everything, far lower for status when Warden answers from its cache.
        if let (Some(b), Some(before)) = (&self.backend, before) {
            let after = b.snapshot();
            match mode {
                Mode::Status => res.backend_status_requests = Some(after.status - before.status),
                Mode::Login => res.backend_logins = Some(after.logins - before.logins),
                _ => {}
            }
        }
        // Lets sockets from the previous mode drain so modes do not bleed into each other.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn fail(res: &mut PathResult, key: &str, e: anyhow::Error) {
    eprintln!("  {key} failed: {e:#}");
    res.failures.insert(key.to_string(), format!("{e:#}"));
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Status => "status",
        Mode::Login => "login",
        Mode::Bulk => "bulk",
        Mode::Echo => "echo",
        Mode::Idle => "idle",
    }
}

pub async fn run(mut a: RunArgs) -> Result<()> {
    let idle = a.modes.is_empty() || a.modes.contains(&Mode::Idle);
    let nofile = nofile_for(&mut a.knobs, idle)?;
    let k = &a.knobs;
    let backend = Backend::start("127.0.0.1:0".parse()?).await?;
    eprintln!("bench backend on {}", backend.addr);
    // Before any load, so Warden inherits the raised descriptor limit.
    let mut warden = match &a.warden {
        Some(bin) => {
            let w = Warden::start(bin, backend.addr).await?;
            eprintln!(
                "warden pid {} on {} (config and logs in {})",
                w.pid(),
                w.listen,
                w.dir.display()
            );
            Some(w)
        }
        None => None,
    };
    let direct = Path {
        name: "direct",
        target: Target {
            addr: backend.addr,
            host: BENCH_HOST.into(),
        },
        pid: None,
        backend: Some(backend.stats.clone()),
        knobs: k,
    };
    let proxied = warden.as_ref().map(|w| Path {
        name: "warden",
        target: w.target(),
        pid: Some(w.pid()),
        backend: Some(backend.stats.clone()),
        knobs: k,
    });
    let mut modes = a.modes.clone();
    if modes.is_empty() {
        // Idle first: Warden's RSS baseline must not include buffers earlier modes left
        // cached in its allocator.
        modes = vec![
            Mode::Idle,
            Mode::Status,
            Mode::Login,
            Mode::Bulk,
            Mode::Echo,
        ];
    }
    let mut d = PathResult::default();
    let mut w = proxied.as_ref().map(|_| PathResult::default());
    for m in modes {
        direct.mode(m, &mut d).await;
        if let (Some(p), Some(res)) = (&proxied, w.as_mut()) {
            p.mode(m, res).await;
            if let Some(wd) = warden.as_mut() {
                if !wd.alive() {
                    bail!(
                        "warden died during {}\n--- warden stderr ---\n{}",
                        mode_name(m),
                        wd.stderr_tail(60)
                    );
                }
            }
        }
    }
    let report = Report {
        params: params(k, nofile),
        target: None,
        warden_binary: a.warden.as_ref().map(|p| p.display().to_string()),
        direct: d,
        warden: w,
        backend: Some(backend.stats.snapshot()),
    };
    if let Some(mut wd) = warden.take() {
        wd.stop();
        let tail = wd.stderr_tail(20);
        if !tail.trim().is_empty() {
            eprintln!("--- warden stderr (last lines) ---\n{tail}");
        }
        // Keep config and logs only when there is something to look into.
        let clean = report.warden.as_ref().is_some_and(|w| {
            w.failures.is_empty()
                && [&w.status, &w.login]
                    .iter()
                    .all(|r| r.as_ref().is_none_or(|r| r.errors == 0))
        });
        if clean && tail.trim().is_empty() {
            let _ = std::fs::remove_dir_all(&wd.dir);
        } else {
            eprintln!("warden config and logs kept in {}", wd.dir.display());
        }
    }
    emit(&report, &k.json)
}
