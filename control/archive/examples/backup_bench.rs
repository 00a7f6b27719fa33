//! What backups cost on a generated 1 GiB server-like world through LocalDir: the first
//! (full) backup, an unchanged world (skipped by stat, and read again in full), 1 % of the
//! world changed in place, then a full verification and a restore. MiB/s are of the
//! world's size; "stored" is what a backup added to the store.
//!
//! The 1 % change is 16 KiB writes (a saved Minecraft chunk is a few 4 KiB sectors) at
//! random offsets of the region files, either clustered in 8 region files (players in one
//! area) or scattered over every region file (the worst case for 1 MiB chunks).
//!
//! Run: `cargo run --release -p warden-archive --example backup_bench [-- SIZE_MIB [DIR [CHUNK_KIB]]]`
//! (DIR defaults to the system temp dir; needs ~3x SIZE of free space). Page cache is warm.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use warden_archive::backup::{self, BackupOptions, Snapshot};
use warden_archive::LocalDir;

#[path = "support/world.rs"]
mod world;
use world::{generate, Rng};

const WRITE: usize = 16 << 10;

fn region_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("world")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "mca") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Writes `total` bytes as 16 KiB blocks at random 4 KiB-aligned offsets of `files`.
fn change(files: &[PathBuf], total: u64, rng: &mut Rng) -> std::io::Result<()> {
    let mut buf = vec![0u8; WRITE];
    for _ in 0..total / WRITE as u64 {
        let f = &files[(rng.next() % files.len() as u64) as usize];
        let len = std::fs::metadata(f)?.len();
        let at = (rng.next() % (len - WRITE as u64)) & !4095;
        rng.fill(&mut buf);
        let mut file = std::fs::OpenOptions::new().write(true).open(f)?;
        file.seek(SeekFrom::Start(at))?;
        file.write_all(&buf)?;
    }
    Ok(())
}

fn report(what: &str, world_mib: f64, secs: f64, s: &Snapshot) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "{what:<40} {secs:6.2} s {:7.0} MiB/s  read {:7.1} MiB  stored {:8.2} MiB in {} blobs",
        world_mib / secs,
        mib(s.stats.read_bytes),
        mib(s.stats.new_stored_bytes),
        s.stats.new_blobs
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let size_mib: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let base = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let chunk_kib: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let tmp = tempfile::tempdir_in(base)?;
    let src = tmp.path().join("server");
    let bytes = generate(&src, size_mib)?;
    let mib = bytes as f64 / (1 << 20) as f64;
    println!("world {mib:.0} MiB, chunks {chunk_kib} KiB, zstd level 3");
    // files written within 2 s of a backup are read again by the next ("racy clean"); a
    // real world's files are older than that
    std::thread::sleep(std::time::Duration::from_millis(2100));

    let store = LocalDir::new(tmp.path().join("store"))?;
    let prefix = "backups/bench";
    let opts = |note: &str, reuse: bool| {
        let mut o = BackupOptions::new("bench", note);
        o.chunk_bytes = chunk_kib << 10;
        o.reuse_unchanged = reuse;
        o
    };
    let run = |what: &'static str, o: BackupOptions| {
        let (store, src) = (&store, &src);
        async move {
            let t = Instant::now();
            let s = backup::backup_dir(store, prefix, src, &o).await?;
            report(what, mib, t.elapsed().as_secs_f64(), &s);
            Ok::<_, warden_archive::ArchiveError>(s)
        }
    };
    run("first backup (all new)", opts("first", true)).await?;
    run("unchanged (skipped by stat)", opts("same", true)).await?;
    run("unchanged (read and hashed again)", opts("same", false)).await?;

    let regions = region_files(&src);
    let one_percent = bytes / 100;
    let mut rng = Rng(0xC0FF_EE00_1234_5678);
    change(&regions[..8.min(regions.len())], one_percent, &mut rng)?;
    run("1 % changed, clustered in 8 region files", opts("c", true)).await?;
    change(&regions, one_percent, &mut rng)?;
    let last = run("1 % changed, scattered over all regions", opts("s", true)).await?;

    let t = Instant::now();
    backup::verify_snapshot(&store, prefix, &last.id).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<40} {secs:6.2} s {:7.0} MiB/s",
        "verify (every blob read and hashed)",
        mib / secs
    );
    let t = Instant::now();
    backup::restore_snapshot(&store, prefix, &last.id, &tmp.path().join("restored")).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<40} {secs:6.2} s {:7.0} MiB/s",
        "restore (verify + write + fsync)",
        mib / secs
    );
    Ok(())
}
