//! The same guarantees against a real S3-compatible server (moto, started by the test via
//! scripts/s3-server.sh on a free 127.0.0.1 port). Not skippable: if the server cannot be
//! started the test fails with the server's output.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod common;

use common::*;
use tokio::io::AsyncReadExt;
use warden_archive::*;

fn s3_store(server: &S3Server, bucket: &str) -> S3 {
    let mut cfg = S3Config::new(
        server.endpoint(),
        "eu-central",
        bucket,
        "test-key",
        "test-secret",
    );
    cfg.path_style = true;
    // smallest legal part size so the ~20 MiB archive is a real multipart upload (4+ parts)
    cfg.part_size = s3_min_part();
    S3::new(&cfg).unwrap()
}

fn s3_min_part() -> usize {
    warden_archive::store::s3::MIN_PART_SIZE
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip_corruption_and_housekeeping() {
    let server = S3Server::start();
    server.create_bucket("warden-archive");
    let store = s3_store(&server, "warden-archive");

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("lobby");
    make_tree(&src);

    let m = archive_dir(&store, "servers/lobby", &src, &ArchiveOptions::default())
        .await
        .unwrap();
    assert!(
        m.archive.bytes > 4 * s3_min_part() as u64,
        "archive not large enough for multipart"
    );
    let head = store
        .head(&data_key("servers/lobby"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.bytes, m.archive.bytes);

    // the stored bytes are exactly what the manifest promises
    let mut obj = Vec::new();
    store
        .get(&data_key("servers/lobby"))
        .await
        .unwrap()
        .read_to_end(&mut obj)
        .await
        .unwrap();
    assert_eq!(sha256_hex(&obj), m.archive.sha256);

    assert_eq!(verify(&store, "servers/lobby").await.unwrap(), m);
    let target = tmp.path().join("restored");
    restore_dir(&store, "servers/lobby", &target).await.unwrap();
    assert_eq!(fingerprint(&target), fingerprint(&src));

    assert_eq!(
        store.list("servers").await.unwrap(),
        vec!["servers/lobby/data.tar.zst", "servers/lobby/manifest.json"]
    );

    // re-archiving over an existing archive is fine
    let m2 = archive_dir(&store, "servers/lobby", &src, &ArchiveOptions::default())
        .await
        .unwrap();
    assert_eq!(
        m2.archive.sha256, m.archive.sha256,
        "archives are deterministic"
    );

    // corruption: one flipped byte in the stored object
    let mut bad = obj.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    store
        .put(
            &data_key("servers/lobby"),
            Box::new(std::io::Cursor::new(bad)),
        )
        .await
        .unwrap();
    let err = verify(&store, "servers/lobby").await.unwrap_err();
    assert!(
        matches!(err, ArchiveError::Verification { ref path, .. } if path == "servers/lobby/data.tar.zst"),
        "{err}"
    );
    let target2 = tmp.path().join("restored2");
    let err = restore_dir(&store, "servers/lobby", &target2)
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Verification { .. }), "{err}");
    assert!(!target2.exists());
    assert!(restoring_siblings(&target2).is_empty());

    // missing object: clean NotFound; delete is idempotent
    store.delete(&data_key("servers/lobby")).await.unwrap();
    store.delete(&data_key("servers/lobby")).await.unwrap();
    assert!(store
        .head(&data_key("servers/lobby"))
        .await
        .unwrap()
        .is_none());
    let err = verify(&store, "servers/lobby").await.unwrap_err();
    assert!(matches!(err, ArchiveError::NotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_missing_bucket_is_a_clear_error() {
    let server = S3Server::start();
    let store = s3_store(&server, "no-such-bucket");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), b"x").unwrap();
    let err = archive_dir(&store, "p", tmp.path(), &ArchiveOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("p/data.tar.zst"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backups_are_incremental_verified_and_pruned() {
    use warden_archive::backup::{self, BackupOptions, Retention};
    let server = S3Server::start();
    server.create_bucket("warden-archive");
    let store = s3_store(&server, "warden-archive");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("lobby");
    make_tree(&src);
    let prefix = "backups/lobby";
    let opts = BackupOptions::new("lobby", "s3");
    let first = backup::backup_dir(&store, prefix, &src, &opts)
        .await
        .unwrap();
    assert!(first.stats.new_blobs >= 20);
    // unchanged, read again: nothing new in the bucket
    let mut reread = opts.clone();
    reread.reuse_unchanged = false;
    let second = backup::backup_dir(&store, prefix, &src, &reread)
        .await
        .unwrap();
    assert_eq!(second.stats.new_blobs, 0);
    assert_eq!(second.stats.read_bytes, first.stats.bytes);

    // a corrupted chunk of the newest makes it fail; the older one is restored
    let big = second
        .entries
        .iter()
        .find(|e| e.path == "world/region/r.0.0.mca")
        .unwrap();
    let sha = &big.chunks[3];
    let key = format!("{prefix}/blobs/{}/{sha}", &sha[..2]);
    let mut stored = Vec::new();
    store
        .get(&key)
        .await
        .unwrap()
        .read_to_end(&mut stored)
        .await
        .unwrap();
    let target = tmp.path().join("restored");
    backup::restore_snapshot(&store, prefix, &second.id, &target)
        .await
        .unwrap();
    assert_eq!(fingerprint(&target), fingerprint(&src));
    let mut bad = stored.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    store
        .put(&key, Box::new(std::io::Cursor::new(bad)))
        .await
        .unwrap();
    // both snapshots share that chunk: nothing verifies, and the target is left alone
    let err = backup::restore_with_fallback(&store, prefix, None, &target)
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::NoUsableBackup { .. }), "{err}");
    assert_eq!(fingerprint(&target), fingerprint(&src));
    store
        .put(&key, Box::new(std::io::Cursor::new(stored)))
        .await
        .unwrap();

    // prune to one: the older manifest goes, every chunk stays (the newest needs them all)
    let r = backup::prune(
        &store,
        prefix,
        &Retention {
            last: 1,
            hourly: 0,
            daily: 0,
            weekly: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(r.deleted, [first.id]);
    assert_eq!(r.blobs_deleted, 0);
    backup::verify_snapshot(&store, prefix, &second.id)
        .await
        .unwrap();
}

/// moto (5.x) answers every upload's `Initiated` with this fixed date instead of the real one.
const MOTO_CANNED_INITIATED_MS: u64 = 1_289_422_113_000; // 2010-11-10T20:48:33Z

/// What a process killed mid-`put` leaves behind: a started multipart upload with one part.
/// object_store's S3 upload does not abort on drop, so dropping it is exactly that.
async fn leave_unfinished_upload(server: &S3Server, bucket: &str, key: &str) {
    use object_store::{aws::AmazonS3Builder, path::Path, ObjectStore, PutPayload};
    let raw = AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_region("eu-central")
        .with_bucket_name(bucket)
        .with_access_key_id("test-key")
        .with_secret_access_key("test-secret")
        .with_virtual_hosted_style_request(false)
        .with_allow_http(true)
        .build()
        .unwrap();
    let mut upload = raw.put_multipart(&Path::from(key)).await.unwrap();
    upload
        .put_part(PutPayload::from(vec![7u8; s3_min_part()]))
        .await
        .unwrap();
    drop(upload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unfinished_uploads_are_listed_and_aborted() {
    let server = S3Server::start();
    server.create_bucket("warden-archive");
    let store = s3_store(&server, "warden-archive");
    assert_eq!(store.unfinished_uploads("").await.unwrap(), []);

    leave_unfinished_upload(&server, "warden-archive", "lobby/data.tar.zst").await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;

    // a completed multipart put (> part size) leaves nothing behind
    let big = vec![3u8; 2 * s3_min_part() + 1];
    store
        .put("hub/data.tar.zst", Box::new(std::io::Cursor::new(big)))
        .await
        .unwrap();
    assert_eq!(
        store.head("hub/data.tar.zst").await.unwrap().unwrap().bytes,
        2 * s3_min_part() as u64 + 1
    );

    let uploads = store.unfinished_uploads("").await.unwrap();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let upload = uploads[0].clone();
    assert_eq!(upload.key, "lobby/data.tar.zst");
    assert!(!upload.id.is_empty());
    let started = upload.started_unix_ms.expect("moto sends Initiated");
    assert!(
        started.abs_diff(now_ms) < 5 * 60_000 || started == MOTO_CANNED_INITIATED_MS,
        "started {started}, now {now_ms}"
    );
    // the unfinished upload is no object
    assert_eq!(store.list("lobby").await.unwrap(), Vec::<String>::new());

    // prefixes are directories, as for list()
    let just_it = vec![upload.clone()];
    assert_eq!(store.unfinished_uploads("lobby").await.unwrap(), just_it);
    assert_eq!(store.unfinished_uploads("lobby/").await.unwrap(), just_it);
    assert_eq!(store.unfinished_uploads("lob").await.unwrap(), []);
    assert_eq!(store.unfinished_uploads("hub").await.unwrap(), []);
    assert!(matches!(
        store.unfinished_uploads("../x").await,
        Err(ArchiveError::InvalidKey { .. })
    ));

    // Paced forwards both
    let paced = Paced::new(std::sync::Arc::new(store.clone()), 1e9);
    assert_eq!(paced.unfinished_uploads("").await.unwrap(), just_it);

    paced.abort_upload(&upload).await.unwrap();
    assert_eq!(store.unfinished_uploads("").await.unwrap(), []);
    // aborting again (or an upload that never existed) succeeds
    store.abort_upload(&upload).await.unwrap();
    let never = Upload {
        key: "lobby/data.tar.zst".into(),
        id: "no-such-upload".into(),
        started_unix_ms: None,
    };
    store.abort_upload(&never).await.unwrap();
    // keys that could leave the bucket in a URL are refused before any request
    let escape = Upload {
        key: "../other-bucket/x".into(),
        ..never.clone()
    };
    assert!(matches!(
        store.abort_upload(&escape).await,
        Err(ArchiveError::InvalidKey { .. })
    ));
    // the completed object is untouched
    assert_eq!(store.list("").await.unwrap(), ["hub/data.tar.zst"]);

    // errors name the operation, the status and the S3 code
    let missing = s3_store(&server, "no-such-bucket");
    let msg = missing
        .unfinished_uploads("")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("ListMultipartUploads") && msg.contains("404") && msg.contains("NoSuchBucket"),
        "{msg}"
    );
    let msg = missing.abort_upload(&never).await.unwrap_err().to_string();
    assert!(
        msg.contains("AbortMultipartUpload")
            && msg.contains("404")
            && msg.contains("lobby/data.tar.zst"),
        "{msg}"
    );
}

#[test]
fn s3_debug_hides_the_secret() {
    let cfg = S3Config::new(
        "http://127.0.0.1:9",
        "eu-central",
        "b",
        "the-access-key",
        "the-very-secret",
    );
    let dbg = format!("{:?}", S3::new(&cfg).unwrap());
    assert!(dbg.contains("the-access-key"), "{dbg}");
    assert!(!dbg.contains("the-very-secret"), "{dbg}");
}
