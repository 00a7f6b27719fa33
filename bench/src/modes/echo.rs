//! Round-trip latency of small messages over one established session: the cost a player
//! feels on every packet. 5,000 samples are few enough to keep and sort, so percentiles
//! are exact rather than bucketed.

use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::proto::{connect, read_exact, write_all, Target, IO_TIMEOUT};

/// Typical of movement and keep-alive packets.
const MSG: usize = 64;
/// Lets TCP windows, caches and the relay's buffers settle before sampling.
const WARMUP: usize = 200;

#[derive(Serialize, Debug, Clone)]
pub struct Echo {
    pub trips: usize,
    pub msg_bytes: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

pub async fn run(t: &Target, trips: usize) -> Result<Echo> {
    let mut s = connect(t.addr).await?;
    write_all(&mut s, &t.login_prefix("echo"), IO_TIMEOUT).await?;
    let mut out = [0u8; MSG];
    let mut back = [0u8; MSG];
    let mut samples = Vec::with_capacity(trips);
    for i in 0..WARMUP + trips {
        // A counter in the message catches a path that reorders or replays.
        out[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let t0 = Instant::now();
        write_all(&mut s, &out, IO_TIMEOUT).await?;
        read_exact(&mut s, &mut back, IO_TIMEOUT).await?;
        let ns = t0.elapsed().as_nanos() as u64;
        if back != out {
            bail!("echo mismatch at trip {i}");
        }
        if i >= WARMUP {
            samples.push(ns);
        }
    }
    samples.sort_unstable();
    let mean = samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64 / 1000.0;
    Ok(Echo {
        trips,
        msg_bytes: MSG,
        p50_us: quantile(&samples, 0.50),
        p99_us: quantile(&samples, 0.99),
        p999_us: quantile(&samples, 0.999),
        max_us: quantile(&samples, 1.0),
        mean_us: mean,
    })
}
