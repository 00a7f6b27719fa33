//! End-to-end archive/verify/restore through the LocalDir store.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use std::fs;
use std::path::Path;
use warden_archive::*;

fn opts() -> ArchiveOptions {
    ArchiveOptions::default()
}

#[tokio::test]
async fn dir_round_trip_is_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("lobby");
    make_tree(&src);
    let store = LocalDir::new(tmp.path().join("store")).unwrap();

    let m = archive_dir(&store, "servers/lobby", &src, &opts())
        .await
        .unwrap();
    assert_eq!(m.version, 1);
    let big = m
        .entries
        .iter()
        .find(|e| e.path == "world/region/r.0.0.mca")
        .unwrap();
    assert_eq!(big.size, Some(20 << 20));
    assert_eq!(
        big.sha256.as_deref(),
        Some(sha256_hex(&fs::read(src.join("world/region/r.0.0.mca")).unwrap()).as_str())
    );
    let empty = m
        .entries
        .iter()
        .find(|e| e.path == "world/session.lock")
        .unwrap();
    assert_eq!(empty.size, Some(0));
    assert!(m
        .entries
        .iter()
        .any(|e| e.path == "plugins/Wörld Édit/日本語/😀 emoji.yml"));
    let link = m.entries.iter().find(|e| e.path == "lock-link").unwrap();
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(link.target.as_deref(), Some("world/session.lock"));

    // the stored object is what the manifest says
    let obj = fs::read(store.path_of(&data_key("servers/lobby")).unwrap()).unwrap();
    assert_eq!(obj.len() as u64, m.archive.bytes);
    assert_eq!(sha256_hex(&obj), m.archive.sha256);
    assert_eq!(
        store.list("servers/lobby").await.unwrap(),
        vec!["servers/lobby/data.tar.zst", "servers/lobby/manifest.json"]
    );

    assert_eq!(verify(&store, "servers/lobby").await.unwrap(), m);

    let target = tmp.path().join("restored/lobby");
    let rm = restore_dir(&store, "servers/lobby", &target).await.unwrap();
    assert_eq!(rm, m);
    assert_eq!(fingerprint(&target), fingerprint(&src));
    assert!(restoring_siblings(&target).is_empty());
}

#[tokio::test]
async fn restore_refuses_non_empty_target_and_accepts_empty_one() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("a")).unwrap();
    fs::write(src.join("a/f"), b"hello").unwrap();
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    archive_dir(&store, "p", &src, &opts()).await.unwrap();

    let busy = tmp.path().join("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("keep.me"), b"precious").unwrap();
    let err = restore_dir(&store, "p", &busy).await.unwrap_err();
    assert!(matches!(err, ArchiveError::TargetNotEmpty { .. }), "{err}");
    assert_eq!(fs::read(busy.join("keep.me")).unwrap(), b"precious");
    assert!(!busy.join("a").exists());

    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    restore_dir(&store, "p", &empty).await.unwrap();
    assert_eq!(fs::read(empty.join("a/f")).unwrap(), b"hello");
}

#[tokio::test]
async fn flipped_byte_fails_verify_and_restore_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    archive_dir(&store, "s", &src, &opts()).await.unwrap();

    flip_byte(&store.path_of(&data_key("s")).unwrap());

    let err = verify(&store, "s").await.unwrap_err();
    match &err {
        ArchiveError::Verification {
            path,
            expected,
            got,
        } => {
            assert_eq!(path, "s/data.tar.zst");
            assert!(
                expected.starts_with("sha256 ") && got.starts_with("sha256 "),
                "{err}"
            );
            assert_ne!(expected, got);
        }
        other => panic!("expected Verification, got {other}"),
    }

    let target = tmp.path().join("restored");
    let err = restore_dir(&store, "s", &target).await.unwrap_err();
    assert!(matches!(err, ArchiveError::Verification { .. }), "{err}");
    assert!(
        !target.exists(),
        "restore left a target after failed verification"
    );
    assert!(
        restoring_siblings(&target).is_empty(),
        "temp dir left behind"
    );
}

#[tokio::test]
async fn manifest_file_hash_mismatch_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    let mut m = archive_dir(&store, "s", &src, &opts()).await.unwrap();

    // object intact, but the manifest disagrees about one file's contents
    let e = m
        .entries
        .iter_mut()
        .find(|e| e.path == "server.properties")
        .unwrap();
    e.sha256 = Some("00".repeat(32));
    let json = serde_json::to_vec(&m).unwrap();
    store
        .put(&manifest_key("s"), Box::new(std::io::Cursor::new(json)))
        .await
        .unwrap();

    let err = verify(&store, "s").await.unwrap_err();
    match &err {
        ArchiveError::Verification { path, expected, .. } => {
            assert_eq!(path, "server.properties");
            assert_eq!(expected, &format!("sha256 {}", "00".repeat(32)));
        }
        other => panic!("expected Verification, got {other}"),
    }
    let target = tmp.path().join("restored");
    assert!(restore_dir(&store, "s", &target).await.is_err());
    assert!(!target.exists());
    assert!(restoring_siblings(&target).is_empty());
}

#[tokio::test]
async fn manifest_listing_a_missing_file_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    let mut m = archive_dir(&store, "s", &src, &opts()).await.unwrap();
    let mut ghost = m.entries[0].clone();
    ghost.path = "ghost".into();
    m.entries.push(ghost);
    store
        .put(
            &manifest_key("s"),
            Box::new(std::io::Cursor::new(serde_json::to_vec(&m).unwrap())),
        )
        .await
        .unwrap();
    match verify(&store, "s").await.unwrap_err() {
        ArchiveError::Verification { path, got, .. } => {
            assert_eq!(path, "ghost");
            assert_eq!(got, "missing from archive");
        }
        other => panic!("expected Verification, got {other}"),
    }
}

#[tokio::test]
async fn partial_and_missing_objects_fail_cleanly_and_rearchive_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    archive_dir(&store, "s", &src, &opts()).await.unwrap();
    let data = store.path_of(&data_key("s")).unwrap();

    // a truncated object (e.g. a copy interrupted by hand) fails on size, not a panic
    let full = fs::read(&data).unwrap();
    fs::write(&data, &full[..full.len() / 3]).unwrap();
    match verify(&store, "s").await.unwrap_err() {
        ArchiveError::Verification {
            path,
            expected,
            got,
        } => {
            assert_eq!(path, "s/data.tar.zst");
            assert_eq!(expected, format!("{} bytes", full.len()));
            assert_eq!(got, format!("{} bytes", full.len() / 3));
        }
        other => panic!("expected Verification, got {other}"),
    }

    // a crash mid-put leaves a .partial: invisible, and the next put replaces it
    fs::write(data.with_extension("zst.partial"), b"garbage").unwrap();
    assert!(!store
        .list("s")
        .await
        .unwrap()
        .iter()
        .any(|k| k.ends_with(".partial")));

    let m = archive_dir(&store, "s", &src, &opts()).await.unwrap();
    assert_eq!(verify(&store, "s").await.unwrap(), m);
    assert!(!data.with_extension("zst.partial").exists());

    store.delete(&data_key("s")).await.unwrap();
    store.delete(&data_key("s")).await.unwrap(); // idempotent
    assert!(store.head(&data_key("s")).await.unwrap().is_none());
    let err = verify(&store, "s").await.unwrap_err();
    assert!(matches!(err, ArchiveError::NotFound { .. }), "{err}");
    let err = verify(&store, "nothing-here").await.unwrap_err();
    assert!(
        matches!(err, ArchiveError::NotFound { ref key } if key == "nothing-here/manifest.json"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_source_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    let err = archive_dir(&store, "s", &tmp.path().join("nope"), &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Io { .. }), "{err}");
    assert!(store.head(&data_key("s")).await.unwrap().is_none());
}

/// Builds a tar like Docker's `GET /containers/{id}/archive?path=/data`: everything under a
/// top-level `data/` directory, with a hard link.
fn docker_like_tar(src: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all("data", src).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    h.set_mode(0o644);
    b.append_link(&mut h, "data/hardlink.properties", "data/server.properties")
        .unwrap();
    b.into_inner().unwrap()
}

#[tokio::test]
async fn tar_stream_round_trip_for_docker() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let input = docker_like_tar(&src);
    let store = LocalDir::new(tmp.path().join("store")).unwrap();

    let m = archive_tar(&store, "c", std::io::Cursor::new(input), &opts())
        .await
        .unwrap();
    assert!(m
        .entries
        .iter()
        .any(|e| e.path == "data/world/region/r.0.0.mca"));
    let hl = m
        .entries
        .iter()
        .find(|e| e.path == "data/hardlink.properties")
        .unwrap();
    assert_eq!(hl.kind, EntryKind::Hardlink);

    // restore as a tar (for upload_to_container): same entries and contents
    let mut reader = restore_tar_stream(&store, "c", Some(tmp.path()))
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut out)
        .await
        .unwrap();
    let unpack = tmp.path().join("unpacked");
    tar::Archive::new(std::io::Cursor::new(out))
        .unpack(&unpack)
        .unwrap();
    let mut want = fingerprint(&src);
    let props = want["server.properties"].clone();
    want.insert("hardlink.properties".into(), props);
    let strip = |fp: std::collections::BTreeMap<String, String>| fp;
    assert_eq!(strip(fingerprint(&unpack.join("data"))), want);

    // and as a directory
    let target = tmp.path().join("restored");
    restore_dir(&store, "c", &target).await.unwrap();
    assert_eq!(fingerprint(&target.join("data")), want);
}

#[tokio::test]
async fn restore_tar_stream_refuses_corrupt_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    archive_dir(&store, "s", &src, &opts()).await.unwrap();
    flip_byte(&store.path_of(&data_key("s")).unwrap());
    let err = restore_tar_stream(&store, "s", None).await.err().unwrap();
    assert!(matches!(err, ArchiveError::Verification { .. }), "{err}");
}

#[tokio::test]
async fn zstd_level_is_configurable() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let text: String = (0..200_000)
        .map(|i| format!("line {} of a log\n", i % 977))
        .collect();
    fs::write(src.join("latest.log"), text).unwrap();
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    let fast = archive_dir(
        &store,
        "l1",
        &src,
        &ArchiveOptions {
            zstd_level: 1,
            ..opts()
        },
    )
    .await
    .unwrap();
    let strong = archive_dir(
        &store,
        "l19",
        &src,
        &ArchiveOptions {
            zstd_level: 19,
            zstd_workers: 2,
        },
    )
    .await
    .unwrap();
    assert_eq!(fast.zstd_level, 1);
    assert!(
        strong.archive.bytes < fast.archive.bytes,
        "{} vs {}",
        strong.archive.bytes,
        fast.archive.bytes
    );
}
