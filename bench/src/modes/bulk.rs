//! Bulk throughput: what the relay costs when it is busy. Uploads go to the backend's
//! `sink`, downloads come from its `source`; both announce their length up front so the
//! end of a stream does not depend on how the path handles half-close.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::proto::{connect, read_exact, read_some, write_all, Target, IO_TIMEOUT};

/// Minecraft-scale writes are small, but a relay's ceiling shows with large ones.
const CHUNK: usize = 64 * 1024;

/// Generous per-operation bound: a stalled relay must fail, a slow one must not.
const STREAM_IO: Duration = Duration::from_secs(30);

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Upload,
    Download,
}

#[derive(Serialize, Debug, Clone)]
pub struct Bulk {
    pub direction: Direction,
    pub streams: usize,
    pub bytes: u64,
    pub secs: f64,
    pub mib_per_sec: f64,
}

async fn one_stream(t: Target, dir: Direction, len: u64) -> Result<()> {
    let mut s = connect(t.addr).await?;
    let name = match dir {
        Direction::Upload => "sink",
        Direction::Download => "source",
    };
    let mut prefix = t.login_prefix(name);
    prefix.extend_from_slice(&len.to_be_bytes());
    write_all(&mut s, &prefix, IO_TIMEOUT).await?;
    match dir {
        Direction::Upload => {
            let buf = vec![0xa5u8; CHUNK];
            let mut sent = 0u64;
            while sent < len {
                let n = (len - sent).min(CHUNK as u64) as usize;
                write_all(&mut s, &buf[..n], STREAM_IO).await?;
                sent += n as u64;
            }
            let mut ack = [0u8; 8];
            read_exact(&mut s, &mut ack, STREAM_IO)
                .await
                .context("waiting for sink count")?;
            let got = u64::from_be_bytes(ack);
            if got != len {
                bail!("sink counted {got} of {len} bytes");
            }
        }
        Direction::Download => {
            let mut buf = vec![0u8; CHUNK * 4];
            let mut got = 0u64;
            while got < len {
                got += read_some(&mut s, &mut buf, STREAM_IO)
                    .await
                    .with_context(|| format!("after {got} of {len} bytes"))?
                    as u64;
            }
        }
    }
    Ok(())
}

/// Moves `total` bytes split over `streams` connections; the clock covers connect to the
/// last byte acknowledged, so it is end-to-end, not a socket-buffer illusion.
pub async fn run(t: &Target, dir: Direction, streams: usize, total: u64) -> Result<Bulk> {
    let streams = streams.max(1);
    let per = total / streams as u64;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..streams {
        tasks.spawn(one_stream(t.clone(), dir, per));
    }
    while let Some(r) = tasks.join_next().await {
        r.context("stream task panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = per * streams as u64;
    Ok(Bulk {
        direction: dir,
        streams,
        bytes,
        secs,
        mib_per_sec: bytes as f64 / (1024.0 * 1024.0) / secs,
    })
}
