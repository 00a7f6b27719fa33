//! Backups through the real binary (process runtime, npm `backend.js` game server): taken
//! on demand and at every stop, listed, restored byte for byte into a sleeping server, a
//! corrupt one skipped for the next older one (and a restore refused when none verifies),
//! online backups between RCON `save-off` and `save-on`, and `warden store backup`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use warden_tests::*;

fn blobs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let root = dir.join("archive/backups/world/blobs");
    for d in std::fs::read_dir(root).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

fn flip_byte(path: &Path) {
    let mut data = std::fs::read(path).unwrap();
    let i = data.len() / 2;
    data[i] ^= 0x01;
    std::fs::write(path, data).unwrap();
}

/// The managed server `world` (asleep at start) with its data in `data`, plus the API.
fn appliance(name: &str, dir: &Path, data: &Path, extra: &str) -> (Warden, u16) {
    appliance_with(name, dir, data, extra, "")
}

/// As [`appliance`], with `tail` after the `[api]` section (webhooks).
fn appliance_with(name: &str, dir: &Path, data: &Path, extra: &str, tail: &str) -> (Warden, u16) {
    let port = free_port();
    let rest =
        stores_in(dir) + &node_server("world", "world.test", port, data, "1h") + extra + API + tail;
    (Warden::start(name, &config("", None, &rest)), port)
}

/// `warden backup world`, returning the new backup's id.
fn backup(w: &Warden, token: &str) -> String {
    let (ok, said) = w.cli(token, &["backup", "world"]);
    assert!(ok, "{said}\n{}", w.log());
    // "backup world: backup 20260102T030405Z taken and verified: …"
    said.split_whitespace()
        .skip_while(|t| *t != "world:")
        .nth(2)
        .unwrap_or_else(|| panic!("no backup id in {said:?}"))
        .to_string()
}

fn list(w: &Warden, token: &str) -> Vec<Value> {
    let (status, body) = w.api("GET", "/v1/servers/world/backups", Some(token), None);
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

fn write_world(data: &Path, seed: u64) {
    std::fs::create_dir_all(data.join("world/region")).unwrap();
    std::fs::write(data.join("world/level.dat"), b"level").unwrap();
    std::fs::write(
        data.join("world/region/r.0.0.mca"),
        incompressible(3 << 20, seed),
    )
    .unwrap();
    std::fs::write(data.join("server.properties"), format!("seed={seed}\n")).unwrap();
}

#[test]
fn backups_restore_byte_identical_and_a_corrupt_one_is_skipped_or_refused() {
    let dir = tempdir("backup");
    let data = dir.join("data");
    write_world(&data, 1);
    let _server = ServerProcess(data.clone());
    let (w, _) = appliance("backup", &dir, &data, "");
    let op = w.token("operator");
    let v1 = tree(&data);

    // The first backup of the sleeping server, listed and verified.
    let b1 = backup(&w, &op);
    let blobs_v1 = blobs(&dir);
    let (ok, said) = w.cli(&op, &["backups", "world"]);
    assert!(ok && said.contains(&b1) && said.contains("yes"), "{said}");

    // The world moves on: 1 MiB rewritten in place, a file added, one removed.
    let mut region = std::fs::read(data.join("world/region/r.0.0.mca")).unwrap();
    region[1 << 20..2 << 20].copy_from_slice(&incompressible(1 << 20, 99));
    std::fs::write(data.join("world/region/r.0.0.mca"), &region).unwrap();
    std::fs::write(data.join("world/new.dat"), b"new").unwrap();
    std::fs::remove_file(data.join("server.properties")).unwrap();
    let b2 = backup(&w, &op);
    let only_v2: Vec<PathBuf> = blobs(&dir)
        .into_iter()
        .filter(|b| !blobs_v1.contains(b))
        .collect();
    // incremental: the changed chunk and the new file, nothing else
    assert_eq!(only_v2.len(), 2, "{only_v2:?}");
    let l = list(&w, &op);
    assert_eq!(l[0]["id"], b2.as_str());
    assert!(
        l[0]["new_bytes"].as_u64().unwrap() < (1 << 20) + 4096,
        "{l:?}"
    );
    assert!(l[1]["new_bytes"].as_u64().unwrap() > 3 << 20, "{l:?}");

    // Restore the first: byte-identical (the added file gone, the removed one back); the
    // world it replaced was backed up first, and stored nothing new.
    let (ok, said) = w.cli(&op, &["restore", "world", "--backup", &b1]);
    assert!(ok, "{said}\n{}", w.log());
    assert!(said.contains(&format!("restored backup {b1}")), "{said}");
    assert!(
        tree(&data) == v1,
        "the restored world differs from backup {b1}"
    );
    let l = list(&w, &op);
    assert_eq!(l.len(), 3, "{l:?}");
    assert!(l[0]["note"]
        .as_str()
        .unwrap()
        .starts_with("before restoring"));
    assert_eq!(l[0]["new_bytes"], 0);

    // A blob only the second backup has is corrupted: asked for it, the next older one is
    // restored, and the operator is told which was skipped and why.
    flip_byte(&only_v2[0]);
    std::fs::write(data.join("world/level.dat"), b"changed since").unwrap();
    let (ok, said) = w.cli(&op, &["restore", "world", "--backup", &b2]);
    assert!(ok, "{said}\n{}", w.log());
    assert!(said.contains(&format!("restored backup {b1}")), "{said}");
    assert!(
        said.contains(&format!("NOT restored, failed verification: {b2}")),
        "{said}"
    );
    assert!(
        tree(&data) == v1,
        "the fallback did not restore backup {b1}"
    );
    let (ok, said) = w.cli(&op, &["backups", "world", "--verify"]);
    assert!(ok && said.contains("NO: verification failed"), "{said}");

    // Every backup corrupt (a blob they all share): refused, the world left as it was.
    let shared = blobs(&dir)
        .into_iter()
        .find(|b| blobs_v1.contains(b) && std::fs::metadata(b).unwrap().len() > 100_000)
        .unwrap();
    flip_byte(&shared);
    let (ok, said) = w.cli(&op, &["restore", "world", "--backup", "latest"]);
    assert!(!ok, "{said}");
    assert!(said.contains("could be restored"), "{said}");
    assert!(tree(&data) == v1, "a failed restore changed the world");

    assert!(w.metric("warden_backups_total{result=\"ok\"}") >= 4.0);
    assert!(w.metric("warden_backups_total{result=\"corrupt\"}") >= 2.0);
    assert!(w.metric("warden_backups_total{result=\"restored\"}") >= 2.0);
}

#[test]
fn a_stop_backs_up_a_running_server_is_copied_between_save_off_and_save_on() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (rcon, mut said_to_rcon) = rt.block_on(fake_rcon(Some("pw")));
    std::env::set_var("WARDEN_TEST_BACKUP_RCON", "pw");
    let dir = tempdir("backup-online");
    let data = dir.join("data");
    write_world(&data, 2);
    let _server = ServerProcess(data.clone());
    let (hook, hooked) = webhook_sink();
    let (w, port) = appliance_with(
        "backup-online",
        &dir,
        &data,
        &format!("rcon = {{ address = \"{rcon}\", password_env = \"WARDEN_TEST_BACKUP_RCON\" }}\n"),
        &format!(
            "[[webhooks]]\nurl = \"http://127.0.0.1:{hook}/h\"\nevents = [\"backup_taken\", \"backup_failed\"]\n"
        ),
    );
    let op = w.token("operator");

    // Awake: a restore is refused (only into a sleeping server); a backup is online.
    let (ok, said) = w.cli(&op, &["wake", "world"]);
    assert!(ok, "{said}\n{}", w.log());
    let (ok, said) = w.cli(&op, &["restore", "world", "--backup", "latest"]);
    assert!(!ok && said.contains("sleeping"), "{said}");
    let online = backup(&w, &op);
    let mut commands = Vec::new();
    while let Ok(c) = said_to_rcon.try_recv() {
        commands.push(c);
    }
    assert_eq!(
        commands,
        ["save-off", "save-all flush", "save-on"],
        "{}",
        w.log()
    );

    // A stop is followed by a backup, before anything else may happen to the server.
    let (ok, said) = w.cli(&op, &["sleep", "world"]);
    assert!(ok, "{said}\n{}", w.log());
    let l = list(&w, &op);
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(l[0]["note"], "at stop");
    assert_eq!(l[1]["id"], online.as_str());
    assert!(l.iter().all(|b| b["verified"] == true), "{l:?}");
    let age = "warden_backup_age_seconds{server=\"world\"}";
    wait_for(
        "the backup age metric",
        Duration::from_secs(20),
        || w.metrics(),
        || w.metrics().contains(age),
    );
    assert!(w.metric(age) < 600.0, "{}", w.metrics());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still runs"
    );
    // Webhooks were told of both, with the backups' ids.
    wait_for(
        "two backup webhooks",
        Duration::from_secs(20),
        || format!("{:?}", hooked.lock()),
        || hooked.lock().len() >= 2,
    );
    let got = hooked.lock().clone();
    assert!(got.iter().all(|e| e["event"] == "backup_taken"), "{got:?}");
    assert_eq!(got[0]["backup"], online.as_str(), "{got:?}");
    assert_eq!(got[1]["backup"], l[0]["id"], "{got:?}");
}

#[test]
fn store_backup_writes_a_copy_the_store_opens() {
    let dir = tempdir("store-backup");
    let data = dir.join("data");
    write_world(&data, 3);
    let _server = ServerProcess(data.clone());
    let (w, _) = appliance("store-backup", &dir, &data, "");
    let copy = dir.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    let file = copy.join(warden_store::EMBEDDED_FILE_NAME);
    // Online: the running appliance holds the file's lock and makes the copy.
    let out = std::process::Command::new(warden_bin())
        .args(["store", "backup"])
        .arg(&file)
        .arg("--config")
        .arg(&w.config)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}\n{}", w.log());
    assert!(said.contains("rows"), "{said}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rec = rt.block_on(async {
        let store = warden_store::EmbeddedStore::open(&copy).await.unwrap();
        warden_store::Servers::get(&store, "world").await.unwrap()
    });
    assert_eq!(rec.unwrap().state, warden_store::ServerState::Sleeping);
    // Nothing is left beside it.
    let names: Vec<_> = std::fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

/// Sets `path`'s modification time `hours` in the past.
fn backdate(path: &Path, hours: u32) {
    let ok = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!("{hours} hours ago"))
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "touch {}", path.display());
}

/// `warden gc` deletes exactly the seeded orphans older than `[gc] min_age` (archives and
/// backups of a server the store does not know, a world set aside by a recovery, an
/// interrupted deletion's leftover) and nothing else: not a young orphan, not the owned
/// server's backups or world, not the neighbours' directories. A dry run deletes nothing.
#[test]
fn the_collector_deletes_exactly_the_old_orphans() {
    let dir = tempdir("gc");
    let data = dir.join("data");
    write_world(&data, 5);
    let _server = ServerProcess(data.clone());
    let (w, _) = appliance("gc", &dir, &data, "[gc]\nmin_age = \"10m\"\n");
    let admin = w.token("admin");
    let owned = backup(&w, &admin);
    let world = tree(&data);
    let put = |rel: &str, hours: u32| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"orphan bytes").unwrap();
        if hours > 0 {
            backdate(&p, hours);
        }
        p
    };
    let old = [
        put("archive/gone/data.tar.zst", 2),
        put("archive/gone/manifest.json", 2),
        put("archive/backups/gone/snapshots/20200101T000000Z.json", 2),
        put(
            "archive/backups/world.stale/snapshots/20200101T000000Z.json",
            2,
        ),
        put(".data.stale-1700000000000/world/level.dat", 2),
        put(".data.warden-removing/x", 2),
    ];
    let young = put("archive/fresh/data.tar.zst", 0);
    // Not Warden's: another program's directory beside the world, and objects in the
    // archive storage that are not shaped like an archive or a backup.
    let neighbours = [
        put(".other.stale-1/x", 2),
        put("datadog/x", 2),
        put("archive/photos/cat.jpg", 2),
        put("archive/backups/gone/notes.txt", 2),
    ];
    for d in [".data.stale-1700000000000", ".data.warden-removing"] {
        backdate(&dir.join(d), 2);
    }

    let (ok, said) = w.cli(&admin, &["gc", "--dry-run"]);
    assert!(
        ok && said.contains("7 orphan(s), 0 deleted"),
        "{said}\n{}",
        w.log()
    );
    assert!(old.iter().chain([&young]).all(|p| p.exists()));

    let (ok, said) = w.cli(&admin, &["gc"]);
    assert!(
        ok && said.contains("7 orphan(s), 6 deleted"),
        "{said}\n{}",
        w.log()
    );
    for kind in ["archive", "backup", "aside", "temp"] {
        assert!(
            said.lines()
                .any(|l| l.starts_with(kind) && l.ends_with("deleted")),
            "{kind}: {said}"
        );
    }
    assert!(said.contains("kept: younger than min_age"), "{said}");
    for p in &old {
        assert!(!p.exists(), "{} survived", p.display());
    }
    assert!(young.exists() && neighbours.iter().all(|p| p.exists()));
    assert!(tree(&data) == world, "the world changed");
    let (ok, said) = w.cli(&admin, &["backups", "world", "--verify"]);
    assert!(
        ok && said.contains(&owned) && !said.contains("NO:"),
        "{said}"
    );
    assert_eq!(w.metric("warden_gc_deleted_total"), 6.0);
    // An operator cannot collect: deleting is an admin's decision.
    let (ok, said) = w.cli(&w.token("operator"), &["gc"]);
    assert!(!ok && said.contains("403"), "{said}");
}
