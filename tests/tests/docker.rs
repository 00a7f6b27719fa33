//! The lifecycle with the Docker runtime and a real dockerd: a join wakes a sleeping
//! container (host networking, the npm `minecraft-protocol` backend inside), the player
//! plays, and an idle container is stopped again.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use warden_tests::*;

/// Config for one Docker-run server `boxed.test` (the nmp backend inside the test image).
fn boxed(dir: &Path, name: &str, port: u16, sleep_after: &str, archive_after: &str) -> String {
    let peers = peers_dir().canonicalize().expect("peers dir");
    format!(
        "[store]\npath = \"{d}/store\"\n[archive]\npath = \"{d}/archive\"\n{}sleep_after = \"{sleep_after}\"\narchive_after = \"{archive_after}\"\n\
         start_timeout = \"60s\"\nstop_timeout = \"10s\"\nmemory_gb = 0.5\n\
         runtime = {{ kind = \"docker\", container = \"{name}\", image = \"{TEST_IMAGE}\", volume = \"{name}-data\", binds = [\"/usr:/usr:ro\", \"{}:/peers:ro\"], \
         cmd = [\"node\", \"/peers/backend.js\", \"--version\", \"1.21.4\", \"--port\", \"{port}\"] }}\n",
        server("boxed", "boxed.test", &format!("127.0.0.1:{port}")),
        peers.display(),
        d = dir.display(),
    )
}

#[test]
fn join_wakes_a_sleeping_container_and_idle_stops_it() {
    docker_ready();
    let name = format!("warden-test-e2e-{}", std::process::id());
    let _cleanup = DockerCleanup::new(&name, &format!("{name}-data"));
    let port = free_port();
    let dir = tempdir("docker");
    let rest = boxed(&dir, &name, port, "4s", "48h");
    let warden = Warden::start("docker", &config("", None, &rest));
    let addr = format!("127.0.0.1:{}", warden.port);
    let m = motd(&addr, "boxed.test");
    assert!(m.contains("Sleeping"), "{m:?}\n{}", warden.log());

    let p = warden.port.to_string();
    let (ok, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.21.4",
        "--server-host",
        "boxed.test",
        "--chat",
        "in a box",
        "--timeout-ms",
        "45000",
    ]);
    assert!(ok, "{lines:?}\n{}", warden.log());
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.HostConfig.NetworkMode}} {{.HostConfig.Memory}}",
            &name
        ]),
        "true host 536870912"
    );

    let until = Instant::now() + Duration::from_secs(60);
    while docker(&["inspect", "-f", "{{.State.Running}}", &name]) != "false" {
        assert!(
            Instant::now() < until,
            "idle container never stopped:\n{}",
            warden.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300)
    )
    .is_err());
    let m = motd(&addr, "boxed.test");
    assert!(m.contains("Sleeping"), "{m:?}");
}

/// Runs `sh -c script` in a throwaway container of the test image with `volume` at /data.
fn in_volume(volume: &str, extra: &[&str], script: &str) -> String {
    let mount = format!("{volume}:/data");
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        "host",
        "-v",
        "/usr:/usr:ro",
        "-v",
        &mount,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[TEST_IMAGE, "sh", "-c", script]);
    let out = Command::new("docker")
        .args(&args)
        .output()
        .expect("docker run");
    assert!(
        out.status.success(),
        "docker run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// sha256 of every regular file in the volume, by path.
fn volume_hashes(volume: &str) -> BTreeMap<String, String> {
    in_volume(
        volume,
        &[],
        "cd /data && find . -type f -print0 | xargs -0 -r sha256sum",
    )
    .lines()
    .filter_map(|l| {
        let (hash, path) = l.split_once("  ")?;
        Some((path.trim_start_matches("./").to_string(), hash.to_string()))
    })
    .collect()
}

fn join(port: u16, chat: &str) -> (bool, Vec<serde_json::Value>) {
    let p = port.to_string();
    player(&[
        "--port",
        &p,
        "--version",
        "1.21.4",
        "--server-host",
        "boxed.test",
        "--chat",
        chat,
        "--timeout-ms",
        "45000",
    ])
}

/// The whole cycle on Docker: a world in a volume sleeps, is archived (volume removed only
/// after verification), and a join restores it byte for byte; Warden is killed with
/// SIGKILL mid-archive and mid-restore along the way and nothing is lost.
#[test]
fn docker_volume_archives_and_restores_byte_identical_through_kill_dash_9() {
    docker_ready();
    let name = format!("warden-test-arch-{}", std::process::id());
    let volume = format!("{name}-data");
    let _cleanup = DockerCleanup::new(&name, &format!("{name}-data"));
    let dir = tempdir("docker-archive");

    // A world: nested directories, incompressible region files, a small text file.
    let src = dir.join("world-src");
    std::fs::create_dir_all(src.join("world/region")).expect("mkdir");
    for i in 0..4 {
        let bytes = incompressible(12 << 20, 0x2545_F491_4F6C_DD1D ^ i as u64);
        std::fs::write(src.join(format!("world/region/r.{i}.0.mca")), bytes).expect("write");
    }
    std::fs::write(src.join("server.properties"), "motd=boxed\n").expect("write");
    assert!(docker_ok(&["volume", "create", &volume]));
    let bind = format!("{}:/src:ro", src.display());
    in_volume(&volume, &["-v", &bind], "cp -a /src/. /data/");
    let before = volume_hashes(&volume);
    assert_eq!(before.len(), 5, "{before:?}");

    let port = free_port();
    let mut warden = Warden::start(
        "docker-archive",
        &config("", None, &boxed(&dir, &name, port, "3s", "2s")),
    );
    let (ok, lines) = join(warden.port, "before");
    assert!(ok, "{lines:?}\n{}", warden.log());

    // Idle → sleeping → archiving: kill Warden while it archives.
    wait_for(
        "archiving to start",
        Duration::from_secs(90),
        || warden.log(),
        || warden.log().contains("state=\"archiving\""),
    );
    warden.crash_and_restart("after-archive-crash.log");
    let log = warden.log_named("after-archive-crash.log");
    assert!(
        docker_ok(&["volume", "inspect", &volume]) || log.contains("archive had completed"),
        "the volume is gone but the archive was not verified:\n{log}"
    );

    // It archives (again); the volume goes only after verification.
    wait_for(
        "the volume to be archived and removed",
        Duration::from_secs(120),
        || warden.log_named("after-archive-crash.log"),
        || !docker_ok(&["volume", "inspect", &volume]),
    );
    wait_for(
        "the archived state",
        Duration::from_secs(30),
        || warden.log_named("after-archive-crash.log"),
        || {
            let l = warden.log_named("after-archive-crash.log");
            l.contains("archived and verified") || l.contains("archive had completed")
        },
    );

    // A join restores it; kill Warden mid-restore.
    let p = warden.port.to_string();
    let joining = player_spawn(&[
        "--port",
        &p,
        "--version",
        "1.21.4",
        "--server-host",
        "boxed.test",
        "--timeout-ms",
        "40000",
    ]);
    wait_for(
        "the restore to start",
        Duration::from_secs(60),
        || warden.log_named("after-archive-crash.log"),
        || {
            warden
                .log_named("after-archive-crash.log")
                .contains("state=\"restoring\"")
        },
    );
    warden.crash_and_restart("after-restore-crash.log");
    let _ = player_wait(joining);
    // Whichever step the kill hit (a half-filled volume, or a restore that had finished),
    // what follows must end with the whole world back.

    // The server still wakes, and every file is back, byte for byte.
    let (ok, lines) = join(warden.port, "after");
    assert!(
        ok,
        "{lines:?}\n{}",
        warden.log_named("after-restore-crash.log")
    );
    let after = volume_hashes(&volume);
    for (path, hash) in &before {
        assert_eq!(after.get(path), Some(hash), "{path} differs after restore");
    }
}

/// A container labelled `warden.host` becomes a routed server with no config entry: status
/// shows it asleep, a join wakes it, idle stops it, and removing the container unroutes it.
#[test]
fn labelled_container_is_discovered_woken_slept_and_forgotten() {
    docker_ready();
    let name = format!("warden-test-found-{}", std::process::id());
    let _cleanup = DockerCleanup::new(&name, &format!("{name}-data"));
    let port = free_port();
    let peers = format!(
        "{}:/peers:ro",
        peers_dir().canonicalize().expect("peers dir").display()
    );
    let (host_label, port_label) = ("warden.host=found.test", format!("warden.port={port}"));
    let p = port.to_string();
    assert!(docker_ok(&[
        "create",
        "--name",
        &name,
        "--network",
        "host",
        "-l",
        host_label,
        "-l",
        &port_label,
        "-l",
        "warden.sleep_after=3s",
        "-l",
        "warden.memory_gb=0.5",
        // Healthy only once the test says so: readiness must wait for it.
        "--health-cmd",
        "test -f /tmp/healthy",
        "--health-interval",
        "500ms",
        "--health-retries",
        "1000",
        "-v",
        "/usr:/usr:ro",
        "-v",
        &peers,
        TEST_IMAGE,
        "node",
        "/peers/backend.js",
        "--version",
        "1.21.4",
        "--port",
        &p,
    ]));
    let dir = tempdir("discovery");
    let rest = format!(
        "[store]\npath = \"{d}/store\"\n[archive]\npath = \"{d}/archive\"\n\
         [discovery]\ndocker = [\"unix:///var/run/docker.sock\"]\ninterval = \"500ms\"\n",
        d = dir.display()
    );
    let warden = Warden::start("discovery", &config("", None, &rest));
    let addr = format!("127.0.0.1:{}", warden.port);
    let found = || motd(&addr, "found.test");
    wait_for(
        "the container to be routed",
        Duration::from_secs(30),
        || warden.log(),
        || found().contains("Sleeping"),
    );

    let joining = player_spawn(&[
        "--port",
        &warden.port.to_string(),
        "--version",
        "1.21.4",
        "--server-host",
        "found.test",
        "--chat",
        "found",
        "--timeout-ms",
        "45000",
    ]);
    // The game server answers pings, but its healthcheck says "starting": not ready yet.
    let game = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for(
        "the container to listen",
        Duration::from_secs(30),
        || warden.log(),
        || TcpStream::connect_timeout(&game, Duration::from_millis(300)).is_ok(),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        found().contains("Starting"),
        "{}\n{}",
        found(),
        warden.log()
    );
    assert!(docker_ok(&["exec", &name, "touch", "/tmp/healthy"]));
    let (ok, lines) = player_wait(joining);
    assert!(ok, "{lines:?}\n{}", warden.log());
    wait_for(
        "the idle container to stop",
        Duration::from_secs(60),
        || warden.log(),
        || docker(&["inspect", "-f", "{{.State.Running}}", &name]) == "false",
    );

    // Adopted means never deleted by Warden: the container is still there, stopped.
    assert_eq!(
        docker(&["inspect", "-f", "{{.Name}}", &name]),
        format!("/{name}")
    );
    docker(&["rm", "-f", &name]);
    wait_for(
        "the host to be unrouted",
        Duration::from_secs(30),
        || warden.log(),
        || warden.log().contains("discovered container gone") && found().is_empty(),
    );
}

/// Warm-swap upgrade of a Docker server: `warden restart --image` moves the players to the
/// anteroom, replaces the container with one on the new image (same volume) and brings
/// them back; an image that cannot run is rolled back to the previous one, and the players
/// are released to it. Nobody is disconnected.
#[test]
fn warm_swap_upgrades_the_image_and_rolls_back_a_broken_one() {
    docker_ready();
    assert!(docker_ok(&["tag", TEST_IMAGE, "warden-test-node:2"]));
    std::env::set_var("WARDEN_TEST_DOCKER_RCON", "docker-secret");
    let name = format!("warden-test-swap-{}", std::process::id());
    let _cleanup = DockerCleanup::new(&name, &format!("{name}-data"));
    let dir = tempdir("docker-swap");
    let (port, rcon) = (free_port(), free_port());
    let rest = boxed(&dir, &name, port, "1h", "48h")
        .replace(
            &format!("\"--port\", \"{port}\"]"),
            &format!(
                "\"--port\", \"{port}\", \"--rcon-port\", \"{rcon}\", \"--rcon-password\", \"docker-secret\"]"
            ),
        )
        + &format!(
            "rcon = {{ address = \"127.0.0.1:{rcon}\", password_env = \"WARDEN_TEST_DOCKER_RCON\" }}\n"
        );
    assert!(rest.contains("--rcon-port"), "{rest}");
    let warden = Warden::start("docker-swap", &config("", None, &(rest + API)));
    let players: Vec<_> = (0..3)
        .map(|i| {
            named_player_spawn(
                warden.port,
                &format!("boxer{i}"),
                "boxed.test",
                &[
                    "--hold-ms",
                    "60000",
                    "--final-line",
                    "true",
                    "--timeout-ms",
                    "60000",
                ],
            )
        })
        .collect();
    wait_for(
        "three players on the server",
        Duration::from_secs(60),
        || warden.log(),
        || {
            docker(&["logs", &name])
                .matches("\"event\":\"join\"")
                .count()
                >= 3
        },
    );
    let token = warden.token("operator");
    let restart = |image: &str| warden.cli(&token, &["restart", "boxed", "--image", image]);
    let image = || docker(&["inspect", "-f", "{{.Config.Image}}", &name]);

    let (ok, said) = restart("warden-test-node:2");
    assert!(ok, "{said}\n{}", warden.log());
    assert!(
        said.contains("on warden-test-node:2") && said.contains("3 players moved"),
        "{said}"
    );
    assert_eq!(image(), "warden-test-node:2");

    // Everyone is back on the server before the next restart.
    wait_for(
        "the players back on the server",
        Duration::from_secs(30),
        || warden.log(),
        || warden.metric("warden_sessions_active") >= 3.0,
    );
    let (ok, said) = restart("warden-test-missing:9");
    assert!(!ok, "{said}");
    assert!(
        said.contains("previous one runs again"),
        "{said}\n{}",
        warden.log()
    );
    assert_eq!(image(), "warden-test-node:2");

    for child in players {
        let (ok, lines) = player_wait(child);
        assert!(ok, "a player was disconnected: {lines:?}\n{}", warden.log());
        let end = lines.last().expect("result");
        assert_eq!(end["phase"], "held", "{lines:?}");
        // Woken through the anteroom, then out and back twice.
        assert_eq!(end["transfers"], 5, "{lines:?}");
        assert_eq!(end["logins"], 3, "{lines:?}");
    }
}

/// The collector and Docker: a server deleted through the API leaves its stopped container
/// and its volume, both labelled with the fleet and the server, and its last backup;
/// `warden gc` reports them,
/// keeps them until `[gc] min_age`, then deletes exactly them. The running container of a
/// live server and a container another fleet labelled on the same daemon stay.
#[test]
fn the_collector_reclaims_a_deleted_servers_container_and_volume_only() {
    docker_ready();
    let name = format!("warden-test-gc-{}", std::process::id());
    let (gone, foreign) = (format!("{name}-gone"), format!("{name}-foreign"));
    let mut cleanup = DockerCleanup::new(&name, &format!("{name}-data"));
    cleanup.containers.extend([gone.clone(), foreign.clone()]);
    cleanup
        .volumes
        .extend([format!("{gone}-data"), format!("{foreign}-data")]);
    let (port, gone_port) = (free_port(), free_port());
    let dir = tempdir("docker-gc");
    let rest = boxed(&dir, &name, port, "1h", "48h") + "[gc]\nmin_age = \"4s\"\n" + API;
    let w = Warden::start("docker-gc", &config("", None, &rest));
    let (admin, operator) = (w.token("admin"), w.token("operator"));
    let (ok, said) = w.cli(&operator, &["wake", "boxed"]);
    assert!(ok, "{said}\n{}", w.log());
    let label = |what: &str, key: &str| {
        let kind = if what.ends_with("-data") {
            "volume"
        } else {
            "container"
        };
        let path = if kind == "volume" {
            ".Labels"
        } else {
            ".Config.Labels"
        };
        docker(&[
            kind,
            "inspect",
            "-f",
            &format!("{{{{index {path} \"{key}\"}}}}"),
            what,
        ])
    };
    let fleet = label(&name, "warden.fleet");
    assert_eq!(fleet.len(), 32, "the fleet id label: {fleet:?}");
    assert_eq!(label(&name, "warden.server"), "boxed");
    assert_eq!(label(&format!("{name}-data"), "warden.fleet"), fleet);
    assert_eq!(label(&format!("{name}-data"), "warden.server"), "boxed");

    // A second server, through the API: woken once, then deleted.
    let peers = peers_dir().canonicalize().expect("peers dir");
    let spec = serde_json::json!({
        "id": "gone", "hosts": ["gone.test"], "backend": format!("127.0.0.1:{gone_port}"),
        "memory_gb": 0.5, "stop_timeout_secs": 10,
        "runtime": {"kind": "docker", "container": gone, "image": TEST_IMAGE,
            "volume": format!("{gone}-data"),
            "binds": ["/usr:/usr:ro", format!("{}:/peers:ro", peers.display())],
            "cmd": ["node", "/peers/backend.js", "--version", "1.21.4", "--port", gone_port.to_string()]}
    });
    let (s, body) = w.api("POST", "/v1/servers", Some(&admin), Some(&spec.to_string()));
    assert_eq!(s, 201, "{body}\n{}", w.log());
    let (ok, said) = w.cli(&operator, &["wake", "gone"]);
    assert!(ok, "{said}\n{}", w.log());
    assert_eq!(label(&gone, "warden.server"), "gone");
    let (s, _) = w.api("DELETE", "/v1/servers/gone", Some(&admin), None);
    assert_eq!(s, 204, "{}", w.log());
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &gone]),
        "false"
    );
    // Another fleet's container and volume for a server of the same name.
    let other = [
        "--label",
        "warden.managed=true",
        "--label",
        "warden.fleet=another-fleet",
    ];
    let mut create = vec![
        "create",
        "--name",
        &foreign,
        "--label",
        "warden.server=gone",
    ];
    create.extend(other);
    create.extend([TEST_IMAGE, "true"]);
    assert!(docker_ok(&create));
    let foreign_volume = format!("{foreign}-data");
    let mut create = vec!["volume", "create", "--label", "warden.server=gone"];
    create.extend(other);
    create.push(&foreign_volume);
    assert!(docker_ok(&create));

    // Its backup taken at the stop is an orphan too.
    let (ok, said) = w.cli(&admin, &["gc", "--dry-run"]);
    assert!(
        ok && said.contains("3 orphan(s), 0 deleted"),
        "{said}\n{}",
        w.log()
    );
    assert!(said.contains("backups/gone/snapshots/"), "{said}");
    assert!(
        said.contains(&format!("container {gone} (server gone)")),
        "{said}"
    );
    assert!(
        said.contains(&format!("volume {gone}-data (server gone)")),
        "{said}"
    );
    std::thread::sleep(Duration::from_secs(5));
    let (ok, said) = w.cli(&admin, &["gc"]);
    assert!(
        ok && said.contains("3 orphan(s), 3 deleted"),
        "{said}\n{}",
        w.log()
    );
    assert!(
        !docker_ok(&["inspect", &gone]),
        "the orphaned container survived"
    );
    assert!(!docker_ok(&["volume", "inspect", &format!("{gone}-data")]));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &name]),
        "true"
    );
    assert!(docker_ok(&["volume", "inspect", &format!("{name}-data")]));
    assert!(
        docker_ok(&["inspect", &foreign]) && docker_ok(&["volume", "inspect", &foreign_volume])
    );
    assert_eq!(w.metric("warden_gc_deleted_total"), 3.0);
}
