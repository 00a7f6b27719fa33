//! Throughput of archive (incl. its read-back verify) and restore on a generated 1 GiB
//! server-like directory through LocalDir.
//!
//! Run: `cargo run --release -p warden-archive --example archive_bench [-- SIZE_MIB [DIR [ZSTD_WORKERS]]]`
//! (DIR defaults to the system temp dir; needs ~3x SIZE of free space). Page cache is warm:
//! the numbers are CPU/pipeline bound, not disk bound.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use warden_archive::{archive_dir, restore_dir, verify, ArchiveOptions, LocalDir};

const FILE: usize = 4 << 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// 5/8 incompressible "region" files, 3/8 log/config-like text.
fn generate(root: &Path, total_mib: usize) -> std::io::Result<u64> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let files = total_mib / 4;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; FILE];
    for i in 0..files {
        if i % 8 < 5 {
            let dir = root.join(format!("world/region{}", i % 3));
            fs::create_dir_all(&dir)?;
            rng.fill(&mut buf);
            fs::write(dir.join(format!("r.{}.{}.mca", i / 7, i % 7)), &buf)?;
        } else {
            let dir = root.join(format!("logs/{}", i % 4));
            fs::create_dir_all(&dir)?;
            let mut f = std::io::BufWriter::new(fs::File::create(dir.join(format!("{i}.log")))?);
            let mut written = 0;
            while written < FILE {
                let line = format!(
                    "[{:02}:{:02}:{:02}] [Server thread/INFO]: Player{} moved to x={} y={} z={} in world\n",
                    rng.next() % 24,
                    rng.next() % 60,
                    rng.next() % 60,
                    rng.next() % 50,
                    (rng.next() % 20000) as i64 - 10000,
                    rng.next() % 256,
                    (rng.next() % 20000) as i64 - 10000
                );
                let take = line.len().min(FILE - written);
                f.write_all(&line.as_bytes()[..take])?;
                written += take;
            }
            f.flush()?;
        }
        bytes += FILE as u64;
    }
    Ok(bytes)
}

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
