//! The measurements. Each mode takes a [`Target`](crate::proto::Target) and knows nothing
//! about whether Warden sits behind it, which is what makes direct and proxied comparable.

pub mod bulk;
pub mod echo;
pub mod idle;
pub mod login;
pub mod status;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

/// Outcome of a closed-loop rate mode.
#[derive(Serialize, Debug, Clone)]
pub struct Rate {
    pub ok: u64,
    pub errors: u64,
    pub secs: f64,
    pub per_sec: f64,
    pub workers: usize,
    /// The first failure verbatim, so a broken path is diagnosable from the report alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Runs `op` back to back on `workers` tasks for `duration`. Closed loop on purpose: the
/// rate is what the path sustains, not what we offered. Operations in flight at the
/// deadline finish (each is individually time-bounded) and count.
pub async fn closed_loop<F, Fut>(workers: usize, duration: Duration, op: F) -> Rate
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (op, ok, errors, first_error) =
            (op.clone(), ok.clone(), errors.clone(), first_error.clone());
        tasks.spawn(async move {
            let mut seq = (w as u64) << 40;
            while Instant::now() < deadline {
                seq += 1;
                match op(seq).await {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        {
                            let mut slot = first_error.lock();
                            slot.get_or_insert_with(|| format!("{e:#}"));
                        }
                        // A refusing path would otherwise spin a core on instant failures.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = start.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    let first_error = first_error.lock().take();
    Rate {
        ok,
        errors: errors.load(Ordering::Relaxed),
        secs,
        per_sec: ok as f64 / secs,
        workers,
        first_error,
    }
}
