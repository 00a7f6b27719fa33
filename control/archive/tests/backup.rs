//! Backups through the LocalDir store: byte-identical round trips, incremental cost, a
//! corrupt blob never restored (the next older snapshot is), and mark-and-sweep retention.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use std::fs;
use std::path::Path;
use warden_archive::backup::{self, BackupOptions, Retention};
use warden_archive::{ArchiveError, LocalDir};
use warden_testkit::incompressible;

const PREFIX: &str = "backups/lobby";

fn opts(note: &str) -> BackupOptions {
    BackupOptions::new("lobby", note)
}

fn blob_files(store: &LocalDir) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let root = store.root().join(PREFIX).join("blobs");
    for d in fs::read_dir(root).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

/// Rewrites 1 MiB in the middle of the 20 MiB region file, in place.
fn touch_region(src: &Path, seed: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(src.join("world/region/r.0.0.mca"))
        .unwrap();
    f.seek(SeekFrom::Start(10 << 20)).unwrap();
    f.write_all(&incompressible(1 << 20, seed)).unwrap();
}

#[tokio::test]
async fn round_trip_is_byte_identical_and_replaces_the_old_world() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("lobby");
    make_tree(&src);
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    let snap = backup::backup_dir(&store, PREFIX, &src, &opts("test"))
        .await
        .unwrap();
    assert_eq!(snap.server, "lobby");
    assert!(snap.stats.new_blobs >= 20, "{:?}", snap.stats); // the 20 MiB file alone is 20 chunks
    assert!(snap.stats.bytes > 20 << 20);

    // into a fresh directory
    let fresh = tmp.path().join("fresh");
    backup::restore_snapshot(&store, PREFIX, &snap.id, &fresh)
        .await
        .unwrap();
    assert_eq!(fingerprint(&fresh), fingerprint(&src));

    // over a world that has moved on: replaced as a whole, nothing left beside it
    let before = fingerprint(&src);
    touch_region(&src, 9);
    fs::write(src.join("new-file.txt"), b"not in the backup").unwrap();
    backup::restore_snapshot(&store, PREFIX, &snap.id, &src)
        .await
        .unwrap();
    assert_eq!(fingerprint(&src), before);
    assert!(restoring_siblings(&src).is_empty());
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(leftovers.len(), 3, "{leftovers:?}"); // lobby, fresh, store

    // the listing agrees
    let list = backup::summaries(&store, PREFIX, true).await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].verified, "{:?}", list[0]);
    assert_eq!(list[0].files, snap.stats.files);
}

#[tokio::test]
async fn an_unchanged_world_stores_nothing_new_and_a_small_change_little() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("lobby");
    make_tree(&src);
    // files changed within 2 s of a backup are read again by the next one ("racy clean")
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    let first = backup::backup_dir(&store, PREFIX, &src, &opts("first"))
        .await
        .unwrap();
    assert!(first.stats.new_stored_bytes > 20 << 20);

    // unchanged: nothing read (stat matches) and nothing stored
    let second = backup::backup_dir(&store, PREFIX, &src, &opts("second"))
        .await
        .unwrap();
    assert_eq!(second.stats.new_blobs, 0);
    assert_eq!(second.stats.new_stored_bytes, 0);
    assert_eq!(second.stats.read_bytes, 0);
    assert_eq!(second.stats.reused_files, first.stats.files);
    // unchanged and read again in full: content addressing alone stores nothing
    let mut reread = opts("reread");
    reread.reuse_unchanged = false;
    let third = backup::backup_dir(&store, PREFIX, &src, &reread)
        .await
        .unwrap();
    assert_eq!(third.stats.new_blobs, 0);
    assert_eq!(third.stats.read_bytes, first.stats.bytes);
    assert_ne!(first.id, second.id);
    assert_ne!(second.id, third.id);

    // 1 MiB rewritten in place, aligned: one new chunk
    touch_region(&src, 7);
    let fourth = backup::backup_dir(&store, PREFIX, &src, &opts("fourth"))
        .await
        .unwrap();
    assert_eq!(fourth.stats.new_blobs, 1, "{:?}", fourth.stats);
    assert!(fourth.stats.new_stored_bytes < (1 << 20) + 4096);
    assert_eq!(fourth.stats.read_bytes, 20 << 20);

    // every snapshot restores its own world
    let out = tmp.path().join("out");
    backup::restore_snapshot(&store, PREFIX, &fourth.id, &out)
        .await
        .unwrap();
    assert_eq!(fingerprint(&out), fingerprint(&src));
    let ids = backup::list_ids(&store, PREFIX).await.unwrap();
    assert_eq!(ids, [first.id, second.id, third.id, fourth.id]);
}

#[tokio::test]
async fn a_corrupt_blob_is_never_restored_and_the_next_older_snapshot_is() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("lobby");
    make_tree(&src);
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    let old = backup::backup_dir(&store, PREFIX, &src, &opts("old"))
        .await
        .unwrap();
    let v1 = fingerprint(&src);
    let blobs_v1 = blob_files(&store);
    touch_region(&src, 5);
    let new = backup::backup_dir(&store, PREFIX, &src, &opts("new"))
        .await
        .unwrap();
    let v2 = fingerprint(&src);
    // the one blob only the newer snapshot has
    let only_new: Vec<_> = blob_files(&store)
        .into_iter()
        .filter(|b| !blobs_v1.contains(b))
        .collect();
    assert_eq!(only_new.len(), 1);
    flip_byte(&only_new[0]);

    // named explicitly: refused, the world in place untouched
    let err = backup::restore_snapshot(&store, PREFIX, &new.id, &src)
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Verification { .. }), "{err:?}");
    assert_eq!(fingerprint(&src), v2);
    assert!(restoring_siblings(&src).is_empty());

    // with fallback: the older one is restored, and the caller is told what was skipped
    let r = backup::restore_with_fallback(&store, PREFIX, Some(&new.id), &src)
        .await
        .unwrap();
    assert_eq!(r.snapshot.id, old.id);
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].0, new.id);
    assert!(
        r.skipped[0].1.contains("verification failed"),
        "{}",
        r.skipped[0].1
    );
    assert_eq!(fingerprint(&src), v1);

    // the full listing finds it too; the cheap one only sees that all blobs are there
    let full = backup::summaries(&store, PREFIX, true).await.unwrap();
    assert_eq!(full[0].id, new.id);
    assert!(!full[0].verified && full[1].verified, "{full:?}");
    let cheap = backup::summaries(&store, PREFIX, false).await.unwrap();
    assert!(cheap[0].verified);

    // a missing blob in the old one too: nothing can be restored, and it says so
    let shared = blob_files(&store)
        .into_iter()
        .find(|b| !only_new.contains(b))
        .unwrap();
    fs::remove_file(shared).unwrap();
    let err = backup::restore_with_fallback(&store, PREFIX, None, &tmp.path().join("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArchiveError::NoUsableBackup { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&old.id), "{err}");
    assert!(!tmp.path().join("x").exists());
    let cheap = backup::summaries(&store, PREFIX, false).await.unwrap();
    assert!(cheap.iter().any(|s| !s.verified && s.problem.is_some()));
}

#[tokio::test]
async fn prune_deletes_unkept_snapshots_then_only_unreferenced_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("lobby");
    make_tree(&src);
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    let mut ids = Vec::new();
    for seed in [100, 102, 104] {
        // (incompressible() sets the seed's lowest bit: odd neighbours would be equal)
        touch_region(&src, seed);
        ids.push(
            backup::backup_dir(&store, PREFIX, &src, &opts("p"))
                .await
                .unwrap()
                .id,
        );
    }
    let before = blob_files(&store).len();
    let keep_one = Retention {
        last: 1,
        hourly: 0,
        daily: 0,
        weekly: 0,
    };

    // a kept manifest that cannot be read stops the sweep (but not the forgetting)
    let newest = store
        .path_of(&format!("{PREFIX}/snapshots/{}.json", ids[2]))
        .unwrap();
    let good = fs::read(&newest).unwrap();
    flip_byte(&newest);
    let r = backup::prune(&store, PREFIX, &keep_one).await.unwrap();
    assert_eq!(r.kept, [ids[2].clone()]);
    assert_eq!(r.deleted, [ids[0].clone(), ids[1].clone()]);
    assert_eq!(r.blobs_deleted, 0);
    assert!(r.sweep_skipped.is_some());
    assert_eq!(blob_files(&store).len(), before);

    // readable again: the two chunks only the deleted snapshots had go, nothing else
    fs::write(&newest, good).unwrap();
    let r = backup::prune(&store, PREFIX, &keep_one).await.unwrap();
    assert_eq!(r.kept, [ids[2].clone()]);
    assert!(r.deleted.is_empty());
    assert_eq!(r.blobs_deleted, 2);
    assert_eq!(blob_files(&store).len(), before - 2);
    backup::verify_snapshot(&store, PREFIX, &ids[2])
        .await
        .unwrap();
    let out = tmp.path().join("out");
    backup::restore_snapshot(&store, PREFIX, &ids[2], &out)
        .await
        .unwrap();
    assert_eq!(fingerprint(&out), fingerprint(&src));
}

#[tokio::test]
async fn a_tar_stream_round_trips_with_owners() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("lobby");
    make_tree(&src);
    let mut tar_bytes = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        b.follow_symlinks(false);
        b.append_dir_all("data", &src).unwrap();
        b.finish().unwrap();
    }
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    let snap = backup::backup_tar(
        &store,
        PREFIX,
        std::io::Cursor::new(tar_bytes),
        &opts("volume"),
    )
    .await
    .unwrap();
    assert!(snap.entries.iter().all(|e| e.path.starts_with("data")));
    let (_, mut stream) = backup::restore_snapshot_tar(&store, PREFIX, &snap.id, None)
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut out)
        .await
        .unwrap();
    let dest = tmp.path().join("unpacked");
    tar::Archive::new(std::io::Cursor::new(out))
        .unpack(&dest)
        .unwrap();
    assert_eq!(fingerprint(&dest.join("data")), fingerprint(&src));
}
