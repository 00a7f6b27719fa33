//! The `warden` binary under test: `Warden::start` writes a config into a fresh temp dir
//! on free ports, runs `warden run`, waits until it listens, and kills it (and the game
//! servers it started) when dropped; plus its metrics, API, CLI and tokens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::{http_get, http_request, metric_value};
use crate::paths::tempdir;
use crate::ports::free_port;
use crate::process::kill_processes_under;
use crate::wait::wait_listening;

/// The `warden` binary next to this test binary (target/<profile>/warden).
pub fn warden_bin() -> PathBuf {
    if let Ok(p) = std::env::var("WARDEN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("warden");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p warden-control)",
        bin.display()
    );
    bin
}

/// A running `warden run` process; killed when dropped.
pub struct Warden {
    pub child: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    pub metrics_port: u16,
    /// The control API's port, for configs using `{api}` (see [`API`]).
    pub api_port: u16,
}

/// An `[api]` section on the port `{api}` stands for.
pub const API: &str = "[api]\nlisten = \"127.0.0.1:{api}\"\n";

impl Warden {
    /// Starts warden with `body` as its config; `{port}`, `{metrics}` and `{dir}` are
    /// replaced. The `[edge]` table must use `listen = "127.0.0.1:{port}"`.
    pub fn start(name: &str, body: &str) -> Warden {
        Self::start_limited(name, body, None)
    }

    /// Like [`Warden::start`], with the process's `RLIMIT_NOFILE` (soft and hard) set to
    /// `nofile` when given, as a service manager would.
    pub fn start_limited(name: &str, body: &str, nofile: Option<u64>) -> Warden {
        let dir = tempdir(name);
        let port = free_port();
        let metrics_port = free_port();
        let api_port = free_port();
        let config = dir.join("warden.toml");
        let text = body
            .replace("{port}", &port.to_string())
            .replace("{api}", &api_port.to_string())
            .replace("{metrics}", &metrics_port.to_string())
            .replace("{dir}", &dir.to_string_lossy());
        std::fs::write(&config, text).expect("write config");
        let child = Self::spawn_limited(&dir, &config, false, "warden.log", nofile);
        let w = Warden {
            child,
            dir,
            config,
            port,
            metrics_port,
            api_port,
        };
        assert!(
            w.wait_ready(),
            "warden did not start listening:\n{}",
            w.log()
        );
        w
    }

    pub fn spawn(dir: &Path, config: &Path, upgrade: bool, log: &str) -> Child {
        Self::spawn_limited(dir, config, upgrade, log, None)
    }

    fn spawn_limited(
        dir: &Path,
        config: &Path,
        upgrade: bool,
        log: &str,
        nofile: Option<u64>,
    ) -> Child {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(dir.join(log)).expect("log file");
        let mut cmd = Command::new(warden_bin());
        cmd.arg("run").arg("--config").arg(config);
        if upgrade {
            cmd.arg("--upgrade");
        }
        cmd.env("RUST_LOG", "info,warden_proxy=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(nofile) = nofile {
            // SAFETY: setrlimit(2) is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: nofile,
                        rlim_max: nofile,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.spawn().expect("spawn warden")
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the process with SIGKILL (no cleanup at all) and starts it again on the same
    /// config and ports; the new process logs to `log`.
    pub fn crash_and_restart(&mut self, log: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(&self.dir, &self.config, false, log);
        assert!(self.wait_ready(), "warden did not come back after kill -9");
    }

    pub fn log_named(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.join(log)).unwrap_or_default()
    }

    pub fn wait_ready(&self) -> bool {
        wait_listening(self.addr(), Duration::from_secs(20))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("warden.log")).unwrap_or_default()
    }

    /// The Prometheus text from `/metrics`.
    pub fn metrics(&self) -> String {
        http_get(
            SocketAddr::from(([127, 0, 0, 1], self.metrics_port)),
            "/metrics",
        )
        .unwrap_or_default()
    }

    /// Sum of a metric's samples whose line starts with `prefix` (name plus optional labels).
    pub fn metric(&self, prefix: &str) -> f64 {
        metric_value(&self.metrics(), prefix)
    }

    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.api_port))
    }

    /// A new API token with `role`, made the way an operator makes the first one:
    /// `warden token create --role R --config F` over the admin socket.
    pub fn token(&self, role: &str) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new(warden_bin())
                .args([
                    "token", "create", "--role", role, "--name", "test", "--config",
                ])
                .arg(&self.config)
                .output()
                .expect("warden token create");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            assert!(
                Instant::now() < until,
                "token create failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `warden ARGS` against this appliance's API with `token`: (success, stdout +
    /// stderr).
    pub fn cli(&self, token: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(warden_bin())
            .args(args)
            .env("WARDEN_API", format!("http://{}", self.api_addr()))
            .env("WARDEN_TOKEN", token)
            .output()
            .expect("warden cli");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// One API request: (status, JSON body or Null).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (status, text) = http_request(self.api_addr(), method, path, token, body);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Game servers Warden started outlive it by design; the test's end is theirs too.
        kill_processes_under(&self.dir);
    }
}
