//! The lifecycle with the Docker runtime and a real dockerd: a join wakes a sleeping
//! container (host networking, the npm `minecraft-protocol` backend inside), the player
//! plays, and an idle container is stopped again.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use warden_tests::*;

const IMAGE: &str = "warden-test-node:1";

fn script(name: &str) {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts").join(name))
        .output()
        .expect("run script");
    assert!(
        out.status.success(),
        "{name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the test's container and volume however the test ends.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.0]);
        docker(&["volume", "rm", "-f", &format!("{}-data", self.0)]);
    }
}

#[test]
fn join_wakes_a_sleeping_container_and_idle_stops_it() {
    script("dockerd.sh");
    script("test-image.sh");
    let name = format!("warden-test-e2e-{}", std::process::id());
    let _cleanup = Cleanup(name.clone());
    let port = free_port();
    let dir = tempdir("docker");
    let peers = peers_dir().canonicalize().expect("peers dir");
    let rest = format!(
        "[store]\npath = \"{}/store\"\n[archive]\npath = \"{}/archive\"\n{}sleep_after = \"4s\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\nmemory_gb = 0.5\n\
         runtime = {{ kind = \"docker\", container = \"{name}\", image = \"{IMAGE}\", volume = \"{name}-data\", binds = [\"/usr:/usr:ro\", \"{}:/peers:ro\"], \
         cmd = [\"node\", \"/peers/backend.js\", \"--version\", \"1.21.4\", \"--port\", \"{port}\"] }}\n",
        dir.display(),
        dir.display(),
        server("boxed", "boxed.test", &format!("127.0.0.1:{port}")),
        peers.display()
    );
    let warden = Warden::start("docker", &config("", None, &rest));
    let addr = format!("127.0.0.1:{}", warden.port);
    let s = mcstatus(&["--addr", &addr, "--host", "boxed.test"]);
    assert!(
        s[0]["motd"]
            .as_str()
            .unwrap_or_default()
            .contains("Sleeping"),
        "{s:?}\n{}",
        warden.log()
    );

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
    let s = mcstatus(&["--addr", &addr, "--host", "boxed.test"]);
    assert!(
        s[0]["motd"]
            .as_str()
            .unwrap_or_default()
            .contains("Sleeping"),
        "{s:?}"
    );
}
