//! Archiving to an S3-compatible store (moto, started by scripts/s3-server.sh) through the
//! real binary: a sleeping server is archived into the bucket, its node copy removed only
//! after verification, and a join restores it byte for byte.

use std::time::{Duration, Instant};

use warden_tests::s3::S3Server;
use warden_tests::*;

#[test]
fn archived_to_s3_and_restored_on_join() {
    let s3 = S3Server::start();
    s3.create_bucket("worlds");
    // Credentials come from the environment, as in production (moto accepts any).
    std::env::set_var("WARDEN_TEST_S3_KEY", "test-key");
    std::env::set_var("WARDEN_TEST_S3_SECRET", "test-secret");

    let dir = tempdir("s3-archive");
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("world/region")).expect("mkdir");
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| {
            let bytes: Vec<u8> = (0..(300_000 + i * 7919))
                .map(|j| ((j * 31 + i * 17) % 251) as u8)
                .collect();
            (format!("world/region/r.{i}.0.mca"), bytes)
        })
        .collect();
    for (name, bytes) in &files {
        std::fs::write(data.join(name), bytes).expect("write");
    }
    let port = free_port();
    let backend = peers_dir().join("backend.js");
    let rest = format!(
        "[store]\npath = \"{d}/store\"\n\
         [archive]\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"worlds\"\n\
         access_key_env = \"WARDEN_TEST_S3_KEY\"\nsecret_key_env = \"WARDEN_TEST_S3_SECRET\"\n\
         {}sleep_after = \"2s\"\narchive_after = \"1s\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\n\
         runtime = {{ kind = \"process\", command = [\"node\", \"{}\", \"--version\", \"1.20.4\", \"--port\", \"{port}\"], dir = \"{}\" }}\n",
        s3.endpoint(),
        server("cloud", "cloud.test", &format!("127.0.0.1:{port}")),
        backend.display(),
        data.display(),
        d = dir.display(),
    );
    let _server = ServerProcess(data.clone());
    let warden = Warden::start("s3-archive", &config("", None, &rest));

    // The server wakes once (so there is something to put back to sleep), then archives.
    let p = warden.port.to_string();
    let join = || {
        player(&[
            "--port",
            &p,
            "--version",
            "1.20.4",
            "--server-host",
            "cloud.test",
            "--chat",
            "up there",
            "--timeout-ms",
            "60000",
        ])
    };
    let (ok, lines) = join();
    assert!(ok, "{lines:?}\n{}", warden.log());
    let until = Instant::now() + Duration::from_secs(90);
    while data.exists() || !warden.log().contains("archived and verified") {
        assert!(Instant::now() < until, "never archived:\n{}", warden.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    // The archive and its manifest are in the bucket.
    let keys = s3.list("worlds");
    assert!(keys.iter().any(|k| k.starts_with("cloud/")), "{keys:?}");

    let (ok, lines) = join();
    assert!(ok, "{lines:?}\n{}", warden.log());
    for (name, bytes) in &files {
        assert!(
            std::fs::read(data.join(name)).expect("restored") == *bytes,
            "{name} differs after the restore"
        );
    }
}

/// Multipart uploads a crash left unfinished keep their parts (billed) forever: `warden gc`
/// reports those of keys shaped like Warden's, whoever the server, and aborts them once
/// older than `[gc] min_age`; another program's upload in the same bucket stays.
#[test]
fn the_collector_aborts_abandoned_uploads_and_nothing_else() {
    let s3 = S3Server::start();
    s3.create_bucket("worlds");
    std::env::set_var("WARDEN_TEST_S3_KEY", "test-key");
    std::env::set_var("WARDEN_TEST_S3_SECRET", "test-secret");
    let dir = tempdir("s3-gc");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let rest = format!(
        "[store]\npath = \"{d}/store\"\n\
         [archive]\nkind = \"s3\"\nendpoint = \"{}\"\nbucket = \"worlds\"\n\
         access_key_env = \"WARDEN_TEST_S3_KEY\"\nsecret_key_env = \"WARDEN_TEST_S3_SECRET\"\n\
         [gc]\nmin_age = \"3s\"\n\
         {}runtime = {{ kind = \"process\", command = [\"true\"], dir = \"{}\" }}\n{API}",
        s3.endpoint(),
        server("cloud", "cloud.test", &format!("127.0.0.1:{}", free_port())),
        data.display(),
        d = dir.display(),
    );
    let w = Warden::start("s3-gc", &config("", None, &rest));
    let admin = w.token("admin");
    s3.abandon_upload("worlds", "ghost/data.tar.zst");
    s3.abandon_upload("worlds", "cloud/data.tar.zst");
    s3.abandon_upload("worlds", "photos/cat.jpg");
    let all = ["cloud/data.tar.zst", "ghost/data.tar.zst", "photos/cat.jpg"];
    assert_eq!(s3.uploads("worlds"), all);

    let (ok, said) = w.cli(&admin, &["gc", "--dry-run"]);
    assert!(
        ok && said.contains("2 orphan(s), 0 deleted"),
        "{said}\n{}",
        w.log()
    );
    assert!(
        said.contains("upload") && said.contains("ghost/data.tar.zst"),
        "{said}"
    );
    assert_eq!(s3.uploads("worlds"), all);
    std::thread::sleep(Duration::from_secs(4));
    let (ok, said) = w.cli(&admin, &["gc"]);
    assert!(
        ok && said.contains("2 orphan(s), 2 deleted"),
        "{said}\n{}",
        w.log()
    );
    assert_eq!(s3.uploads("worlds"), ["photos/cat.jpg"]);
    assert_eq!(w.metric("warden_gc_deleted_total"), 2.0);
}
