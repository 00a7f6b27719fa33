//! Memory per idle session: the figure that decides how many players one Warden holds.
//! Sessions are fully routed (the backend has seen their Login Start) and then silent,
//! like players standing still; Warden's RSS is read from /proc before and after.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::backend::Stats;
use crate::proto::{connect, write_all, Target, IO_TIMEOUT};
use crate::sys::vmrss_kib;

/// Enough in flight to open 10k sessions in seconds without overflowing the accept backlog.
const OPEN_CONCURRENCY: usize = 256;

#[derive(Serialize, Debug, Clone)]
pub struct Idle {
    pub sessions: usize,
    pub opened: usize,
    pub open_errors: usize,
    pub open_secs: f64,
    /// Logins the backend counted for these sessions (None against an external target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_seen: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_after_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kib_per_session: Option<f64>,
    /// 2 s after the sessions closed: shows whether the memory comes back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_after_close_kib: Option<u64>,
    /// 10 s after they closed: whether it comes back given time (allocator decay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_after_close_10s_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

async fn open_one(t: Target) -> Result<TcpStream> {
    let mut s = connect(t.addr).await?;
    // `echo` keeps the backend side alive and silent until we close.
    write_all(&mut s, &t.login_prefix("echo"), IO_TIMEOUT).await?;
    Ok(s)
}

/// Opens `n` sessions, waits until `backend` (if ours) has routed them all, settles for a
/// second, and reports `pid`'s RSS growth per session and its RSS 2 s and 10 s after they
/// closed.
pub async fn run(
    t: &Target,
    n: usize,
    pid: Option<u32>,
    backend: Option<Arc<Stats>>,
) -> Result<Idle> {
    let seen_before = backend.as_ref().map(|b| b.logins.load(Ordering::Relaxed));
    let rss_before = pid.map(vmrss_kib).transpose()?;
    let start = Instant::now();
    let sem = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let t = t.clone();
        tasks.spawn(async move {
            let r = open_one(t).await;
            drop(permit);
            r
        });
    }
    let mut held = Vec::with_capacity(n);
    let mut first_error = None;
    let mut open_errors = 0;
    while let Some(r) = tasks.join_next().await {
        match r.context("open task panicked")? {
            Ok(s) => held.push(s),
            Err(e) => {
                open_errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let mut backend_seen = None;
    if let (Some(b), Some(before)) = (&backend, seen_before) {
        // Sent is not routed: wait for the backend to count every Login Start.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = b.logins.load(Ordering::Relaxed) - before;
            backend_seen = Some(seen);
            if seen >= held.len() as u64 {
                break;
            }
            if Instant::now() > deadline {
                first_error.get_or_insert_with(|| {
                    format!(
                        "backend saw only {seen} of {} sessions after 30 s",
                        held.len()
                    )
                });
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let open_secs = start.elapsed().as_secs_f64();
    // Lets lazily grown buffers and allocator caches reach their steady state.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = pid.map(vmrss_kib).transpose()?;
    let opened = held.len();
    drop(held);
    let (rss_after_close, rss_after_close_10s) = match pid {
        Some(p) => {
            let closed = Instant::now();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let at_2s = vmrss_kib(p)?;
            tokio::time::sleep(Duration::from_secs(10).saturating_sub(closed.elapsed())).await;
            (Some(at_2s), Some(vmrss_kib(p)?))
        }
        None => (None, None),
    };
    let kib_per_session = match (rss_before, rss_after) {
        (Some(b), Some(a)) if opened > 0 => Some((a as f64 - b as f64) / opened as f64),
        _ => None,
    };
    Ok(Idle {
        sessions: n,
        opened,
        open_errors,
        open_secs,
        backend_seen,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        kib_per_session,
        rss_after_close_kib: rss_after_close,
        rss_after_close_10s_kib: rss_after_close_10s,
        first_error,
    })
}
