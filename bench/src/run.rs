//! The `run` command, and the machinery `peers` shares with it: paths (direct, or through
//! a proxy) in front of one bench backend, and rounds that run every mode on every path,
//! mode by mode, so that direct and proxied numbers see the same machine state.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::backend::{Backend, Stats};
use crate::child::Proc;
use crate::modes::{self, bulk::Direction};
use crate::proto::Target;
use crate::report::{PathResult, Report};
use crate::warden::{Warden, BENCH_HOST};
use crate::{emit, nofile_for, params, sys, Knobs, Mode, RunArgs};

/// Context one path's measurements need.
pub struct Path<'a> {
    pub name: String,
    pub target: Target,
    /// The proxy on this path, whose CPU and memory are charged to it.
    pub proc: Option<&'a mut Proc>,
    pub backend: Option<Arc<Stats>>,
    pub knobs: &'a Knobs,
}

impl<'a> Path<'a> {
    /// The path straight to the bench backend.
    pub fn direct(backend: &Backend, knobs: &'a Knobs) -> Self {
        Self {
            name: "direct".into(),
            target: Target {
                addr: backend.addr,
                host: BENCH_HOST.into(),
            },
            proc: None,
            backend: Some(backend.stats.clone()),
            knobs,
        }
    }

    /// The path through a proxy (`proc`) listening at `target`, in front of `backend`.
    pub fn proxied(
        name: &str,
        target: Target,
        proc: &'a mut Proc,
        backend: &Backend,
        knobs: &'a Knobs,
    ) -> Self {
        Self {
            name: name.into(),
            target,
            proc: Some(proc),
            backend: Some(backend.stats.clone()),
            knobs,
        }
    }

    fn pid(&self) -> Option<u32> {
        self.proc.as_deref().map(Proc::pid)
    }

    /// Runs one mode and charges it the CPU it cost: the bench's own (client and backend)
    /// and, on a proxied path, the proxy's.
    async fn cpu<T>(&self, res: &mut PathResult, key: &str, f: impl Future<Output = T>) -> T {
        let me = std::process::id();
        let bench_before = sys::cpu_secs(me).ok();
        let proxy_before = self.pid().and_then(|p| sys::cpu_secs(p).ok());
        let out = f.await;
        if let (Some(b), Ok(a)) = (bench_before, sys::cpu_secs(me)) {
            res.bench_cpu_secs.insert(key.to_string(), a - b);
        }
        if let (Some(p), Some(b)) = (self.pid(), proxy_before) {
            if let Ok(a) = sys::cpu_secs(p) {
                res.proxy_cpu_secs.insert(key.to_string(), a - b);
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
                let runs = [
                    ("bulk_upload", Direction::Upload, k.streams),
                    ("bulk_upload_single", Direction::Upload, 1),
                    ("bulk_download", Direction::Download, k.streams),
                    ("bulk_download_single", Direction::Download, 1),
                ];
                for (key, dir, streams) in runs {
                    let r = self.cpu(res, key, modes::bulk::run(t, dir, streams, total));
                    match r.await {
                        Ok(b) => *bulk_slot(res, key) = Some(b),
                        Err(e) => fail(res, key, e),
                    }
                }
            }
            Mode::Echo => match modes::echo::run(t, k.echo_trips).await {
                Ok(e) => res.echo = Some(e),
                Err(e) => fail(res, "echo", e),
            },
            Mode::Idle => {
                let r = modes::idle::run(t, k.sessions, self.pid(), self.backend.clone());
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

fn bulk_slot<'r>(res: &'r mut PathResult, key: &str) -> &'r mut Option<modes::bulk::Bulk> {
    match key {
        "bulk_upload" => &mut res.bulk_upload,
        "bulk_upload_single" => &mut res.bulk_upload_single,
        "bulk_download" => &mut res.bulk_download,
        _ => &mut res.bulk_download_single,
    }
}

fn fail(res: &mut PathResult, key: &str, e: anyhow::Error) {
    eprintln!("  {key} failed: {e:#}");
    res.failures.insert(key.to_string(), format!("{e:#}"));
}

pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Status => "status",
        Mode::Login => "login",
        Mode::Bulk => "bulk",
        Mode::Echo => "echo",
        Mode::Idle => "idle",
    }
}

/// The modes asked for, or all of them. Idle first: a proxy's RSS baseline must not
/// include buffers earlier modes left cached in its allocator.
pub fn modes_or_all(asked: &[Mode]) -> Vec<Mode> {
    if !asked.is_empty() {
        return asked.to_vec();
    }
    vec![
        Mode::Idle,
        Mode::Status,
        Mode::Login,
        Mode::Bulk,
        Mode::Echo,
    ]
}

/// One round: each mode on every path (in order) before the next mode, into `results`
/// (one per path). A proxy that dies is recorded as its path's `died` failure, with its
/// stderr, and that path sits out the rest of the round; the dead paths' names are
/// returned.
pub async fn round(
    paths: &mut [Path<'_>],
    results: &mut [PathResult],
    modes: &[Mode],
) -> Vec<String> {
    let mut dead = Vec::new();
    for &m in modes {
        for (p, res) in paths.iter_mut().zip(results.iter_mut()) {
            if dead.contains(&p.name) {
                continue;
            }
            p.mode(m, res).await;
            if let Some(proc) = p.proc.as_deref_mut() {
                if !proc.alive() {
                    let why = format!(
                        "died during {}\n--- stderr ---\n{}",
                        mode_name(m),
                        proc.stderr_tail(60)
                    );
                    eprintln!("[{}] {why}", p.name);
                    res.failures.insert("died".into(), why);
                    dead.push(p.name.clone());
                }
            }
        }
    }
    dead
}

pub async fn run(mut a: RunArgs) -> Result<()> {
    let modes = modes_or_all(&a.modes);
    let nofile = nofile_for(&mut a.knobs, modes.contains(&Mode::Idle))?;
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
    let mut paths = vec![Path::direct(&backend, k)];
    if let Some(w) = warden.as_mut() {
        let target = w.target();
        paths.push(Path::proxied("warden", target, w.proc(), &backend, k));
    }
    let mut results: Vec<PathResult> = paths.iter().map(|_| PathResult::default()).collect();
    let dead = round(&mut paths, &mut results, &modes).await;
    drop(paths);
    let mut results = results.into_iter();
    let d = results.next().unwrap_or_default();
    let w = results.next();
    if !dead.is_empty() {
        let why = w.as_ref().and_then(|w| w.failures.get("died"));
        bail!("warden {}", why.map_or("died", String::as_str));
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
        let clean = report.warden.as_ref().is_some_and(PathResult::clean);
        if clean && tail.trim().is_empty() {
            let _ = std::fs::remove_dir_all(&wd.dir);
        } else {
            eprintln!("warden config and logs kept in {}", wd.dir.display());
        }
    }
    emit(&report, &k.json)
}
