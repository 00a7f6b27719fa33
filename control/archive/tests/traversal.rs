//! Hostile tar input: path traversal and symlink escapes must be refused both when archiving
//! a container's tar and when restoring a (tampered) archive.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::restoring_siblings;
use std::fs;
use std::path::Path;
use warden_archive::manifest::{ArchiveObject, Entry, EntryKind, Manifest};
use warden_archive::*;

enum Kind {
    File(&'static [u8]),
    Dir,
    Symlink(&'static str),
    Hardlink(&'static str),
}

/// Raw tar with names written straight into the header, bypassing the tar crate's own
/// checks (which would refuse `..`), as an attacker's tar would.
fn raw_tar(items: &[(&str, Kind)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind) in items {
        let mut h = tar::Header::new_gnu();
        let raw = &mut h.as_gnu_mut().unwrap().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        let data: &[u8] = match kind {
            Kind::File(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                d
            }
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                b""
            }
            Kind::Symlink(t) | Kind::Hardlink(t) => {
                h.set_entry_type(if matches!(kind, Kind::Symlink(_)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                let l = &mut h.as_gnu_mut().unwrap().linkname;
                l[..t.len()].copy_from_slice(t.as_bytes());
                b""
            }
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn manifest_for(items: &[(&str, Kind)], obj: &[u8]) -> Manifest {
    let entries = items
        .iter()
        .map(|(name, kind)| {
            let path = name.trim_start_matches('/').to_string();
            match kind {
                Kind::File(d) => Entry {
                    path,
                    kind: EntryKind::File,
                    mode: 0o644,
                    size: Some(d.len() as u64),
                    sha256: Some(sha256_hex(d)),
                    target: None,
                },
                Kind::Dir => Entry {
                    path,
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    size: None,
                    sha256: None,
                    target: None,
                },
                Kind::Symlink(t) => Entry {
                    path,
                    kind: EntryKind::Symlink,
                    mode: 0o777,
                    size: None,
                    sha256: None,
                    target: Some(t.to_string()),
                },
                Kind::Hardlink(t) => Entry {
                    path,
                    kind: EntryKind::Hardlink,
                    mode: 0o644,
                    size: None,
                    sha256: None,
                    target: Some(t.to_string()),
                },
            }
        })
        .collect();
    Manifest {
        version: 1,
        created_unix: 0,
        zstd_level: 3,
        archive: ArchiveObject {
            object: "data.tar.zst".into(),
            format: "tar+zstd".into(),
            bytes: obj.len() as u64,
            sha256: sha256_hex(obj),
        },
        total_file_bytes: 0,
        entries,
    }
}

/// Store a hostile archive with a manifest that matches it exactly, so only the path
/// checks stand between it and the filesystem.
async fn plant(store: &LocalDir, prefix: &str, items: &[(&str, Kind)]) {
    let obj = zstd::encode_all(&raw_tar(items)[..], 3).unwrap();
    let m = manifest_for(items, &obj);
    store
        .put(&data_key(prefix), Box::new(std::io::Cursor::new(obj)))
        .await
        .unwrap();
    store
        .put(
            &manifest_key(prefix),
            Box::new(std::io::Cursor::new(serde_json::to_vec(&m).unwrap())),
        )
        .await
        .unwrap();
}

fn cases() -> Vec<(&'static str, Vec<(&'static str, Kind)>)> {
    vec![
        ("dotdot file", vec![("../evil.txt", Kind::File(b"pwned"))]),
        (
            "nested dotdot",
            vec![("a/../../evil.txt", Kind::File(b"pwned"))],
        ),
        (
            "absolute",
            vec![("/tmp/warden-archive-evil.txt", Kind::File(b"pwned"))],
        ),
        (
            "symlink escaping",
            vec![
                ("esc", Kind::Symlink("../..")),
                ("esc/evil.txt", Kind::File(b"pwned")),
            ],
        ),
        (
            "absolute symlink",
            vec![
                ("abs", Kind::Symlink("/tmp")),
                ("abs/evil.txt", Kind::File(b"pwned")),
            ],
        ),
        (
            "write through internal symlink",
            vec![
                ("sub", Kind::Dir),
                ("in", Kind::Symlink("sub")),
                ("in/evil.txt", Kind::File(b"pwned")),
            ],
        ),
        (
            "hardlink outside",
            vec![("h", Kind::Hardlink("../../etc/passwd"))],
        ),
        (
            "hardlink to later/unknown",
            vec![("h", Kind::Hardlink("nothing"))],
        ),
    ]
}

fn assert_no_evil(dir: &Path) {
    for p in [
        dir.join("evil.txt"),
        dir.parent().unwrap().join("evil.txt"),
        "/tmp/warden-archive-evil.txt".into(),
        "/tmp/evil.txt".into(),
    ] {
        assert!(!p.exists(), "{} was written", p.display());
    }
}

#[tokio::test]
async fn restore_refuses_hostile_archives() {
    for (name, items) in cases() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalDir::new(tmp.path().join("store")).unwrap();
        plant(&store, "bad", &items).await;
        let target = tmp.path().join("out/target");
        fs::create_dir_all(target.parent().unwrap()).unwrap();

        let err = verify(&store, "bad").await.unwrap_err();
        assert!(
            matches!(err, ArchiveError::UnsafePath { .. }),
            "{name}: verify gave {err}"
        );

        let err = restore_dir(&store, "bad", &target).await.unwrap_err();
        assert!(
            matches!(err, ArchiveError::UnsafePath { .. }),
            "{name}: restore gave {err}"
        );
        assert!(!target.exists(), "{name}: target created");
        assert!(
            restoring_siblings(&target).is_empty(),
            "{name}: temp dir left"
        );
        assert_no_evil(&target);
        assert!(!tmp.path().join("evil.txt").exists(), "{name}");

        let err = restore_tar_stream(&store, "bad", Some(tmp.path()))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, ArchiveError::UnsafePath { .. }),
            "{name}: restore_tar_stream gave {err}"
        );
    }
}

#[tokio::test]
async fn archive_tar_refuses_hostile_input_and_stores_nothing() {
    for (name, items) in cases() {
        // "write through internal symlink" is a legal tar on its own; restore refuses it
        if name == "write through internal symlink" {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalDir::new(tmp.path().join("store")).unwrap();
        let err = archive_tar(
            &store,
            "bad",
            std::io::Cursor::new(raw_tar(&items)),
            &ArchiveOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, ArchiveError::UnsafePath { .. }),
            "{name}: {err}"
        );
        assert!(
            store.head(&data_key("bad")).await.unwrap().is_none(),
            "{name}: data object committed"
        );
        assert!(
            store.head(&manifest_key("bad")).await.unwrap().is_none(),
            "{name}: manifest written"
        );
        assert!(
            store.list("").await.unwrap().is_empty(),
            "{name}: leftovers"
        );
    }
}

#[tokio::test]
async fn archive_dir_refuses_escaping_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("ok"), b"ok").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("passwd")).unwrap();
    let store = LocalDir::new(tmp.path().join("store")).unwrap();
    let err = archive_dir(&store, "s", &src, &ArchiveOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArchiveError::UnsafePath { ref path, .. } if path == "passwd"),
        "{err}"
    );
    assert!(store.head(&data_key("s")).await.unwrap().is_none());
}
