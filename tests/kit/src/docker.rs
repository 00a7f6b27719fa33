//! Docker for tests: a daemon and the local test image, made ready once per test binary
//! (`scripts/dockerd.sh` starts a daemon if none answers, `scripts/test-image.sh` builds
//! `warden-test-node:1`: no registry, no internet), the `docker` CLI, and a guard that
//! removes what a test created. If Docker cannot run here the tests FAIL with the scripts'
//! reason; they never skip.

use std::process::Command;
use std::sync::OnceLock;

use crate::paths::{peers_dir, repo_root};

/// The local image the Docker tests run (the host's node and the repo's nmp backend are
/// bound into it).
pub const TEST_IMAGE: &str = "warden-test-node:1";

fn run_script(args: &[&str]) -> Result<String, String> {
    let out = Command::new("bash")
        .args(args)
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("could not run {args:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{args:?} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Daemon, image and node peers, once per test binary (the tests run in parallel); panics
/// with the reason if Docker is not usable.
pub fn docker_ready() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        run_script(&["scripts/dockerd.sh"])?;
        if !peers_dir().join("node_modules/minecraft-protocol").exists() {
            run_script(&["scripts/install-test-deps.sh", "--no-apt"])?;
        }
        run_script(&["scripts/test-image.sh"])?;
        Ok(())
    });
    if let Err(why) = ready {
        panic!("Docker is not usable on this machine, so it cannot be tested:\n{why}");
    }
}

/// Runs `docker ARGS`; its stdout, trimmed.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether `docker ARGS` succeeds.
pub fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Removes a test's containers, then its volumes, however the test ends.
pub struct DockerCleanup {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
}

impl DockerCleanup {
    /// One container and one volume.
    pub fn new(container: &str, volume: &str) -> DockerCleanup {
        DockerCleanup {
            containers: vec![container.to_string()],
            volumes: vec![volume.to_string()],
        }
    }
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        for v in &self.volumes {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", v])
                .output();
        }
    }
}
