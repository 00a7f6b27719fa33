//! Throughput of archive (incl. its read-back verify) and restore on a generated 1 GiB
//! server-like directory through LocalDir.
//!
//! Run: `cargo run --release -p warden-archive --example archive_bench [-- SIZE_MIB [DIR [ZSTD_WORKERS]]]`
//! (DIR defaults to the system temp dir; needs ~3x SIZE of free space). Page cache is warm:
//! the numbers are CPU/pipeline bound, not disk bound.

use std::time::Instant;
use warden_archive::{archive_dir, restore_dir, verify, ArchiveOptions, LocalDir};

#[path = "support/world.rs"]
mod world;
use world::generate;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let size_mib: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let base = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base)?;
    let src = tmp.path().join("server");
    let t = Instant::now();
    let bytes = generate(&src, size_mib)?;
    let mib = bytes as f64 / (1 << 20) as f64;
    println!(
        "generated {mib:.0} MiB in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let store = LocalDir::new(tmp.path().join("store"))?;
    let mut opts = ArchiveOptions::default();
    if let Some(w) = args.next() {
        opts.zstd_workers = w.parse()?;
    }
    let t = Instant::now();
    let m = archive_dir(&store, "bench", &src, &opts).await?;
    let archive_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    verify(&store, "bench").await?;
    let verify_s = t.elapsed().as_secs_f64();

    let target = tmp.path().join("restored");
    let t = Instant::now();
    restore_dir(&store, "bench", &target).await?;
    let restore_s = t.elapsed().as_secs_f64();

    let ratio = bytes as f64 / m.archive.bytes as f64;
    println!(
        "zstd level {}, workers {}",
        opts.zstd_level, opts.zstd_workers
    );
    println!(
        "archive (tar+zstd+write+fsync, then read-back verify): {archive_s:.2} s = {:.0} MiB/s",
        mib / archive_s
    );
    println!(
        "  of which write ~{:.0} MiB/s, verify alone {verify_s:.2} s = {:.0} MiB/s",
        mib / (archive_s - verify_s).max(0.001),
        mib / verify_s
    );
    println!(
        "restore (download+verify+extract+fsync+rename): {restore_s:.2} s = {:.0} MiB/s",
        mib / restore_s
    );
    println!(
        "compression: {mib:.0} MiB -> {:.0} MiB, ratio {ratio:.2}",
        m.archive.bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
