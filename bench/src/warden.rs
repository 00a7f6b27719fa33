//! Runs the Warden under test as a child process in front of the bench backend.
//!
//! The bench starts Warden itself so the direct and proxied numbers come from the same
//! machine state in the same run, and so it knows the pid whose memory it reports.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::proto::Target;

/// The route every bench client names in its handshake.
pub const BENCH_HOST: &str = "bench.test";

pub struct Warden {
    child: Child,
    pub listen: SocketAddr,
    pub dir: PathBuf,
    stderr_path: PathBuf,
    /// The route status pings name while waiting for Warden to come up.
    host: String,
}

/// A port that was free a moment ago. Warden binds by config, not by fd, so there is a
/// small race; on a bench box nothing else is grabbing loopback ports.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn unique_dir() -> Result<PathBuf> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let dir = PathBuf::from(format!("/tmp/warden-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

fn config_toml(listen: SocketAddr, metrics: SocketAddr, backend: SocketAddr, dir: &Path) -> String {
    // A short grace period so SIGTERM at the end is a clean exit, not a SIGKILL.
    // Limits are raised because every bench connection comes from one /24 (loopback);
    // the defaults would turn the measurement into a rate-limiter test.
    format!(
        r#"[edge]
listen = "{listen}"
handshake_timeout = "5s"
connect_timeout = "5s"
idle_timeout = "10m"
upgrade_sock = "{sock}"
grace_period = "2s"
threads = 2

[edge.limits]
status_per_second = 1000000
login_per_second = 1000000
connections_per_bucket = 1000000
max_connections = 1000000

[status]
cache_ttl = "5s"

[metrics]
listen = "{metrics}"

[[servers]]
id = "bench"
hosts = ["{BENCH_HOST}"]
backend = "{backend}"
"#,
        sock = dir.join("upgrade.sock").display(),
    )
}

impl Warden {
    /// Writes a config, starts `bin run --config FILE` and waits until a status ping
    /// through it succeeds. On failure Warden's stderr is part of the error.
    pub async fn start(bin: &Path, backend: SocketAddr) -> Result<Self> {
        let dir = unique_dir()?;
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        Self::start_with(bin, dir, BENCH_HOST, |listen, dir| {
            config_toml(listen, metrics, backend, dir)
        })
        .await
    }

    /// Starts Warden on a config of the caller's (`config(listen, dir)`), in `dir`, and
    /// waits until a status ping for `host` through it succeeds.
    pub async fn start_with(
        bin: &Path,
        dir: PathBuf,
        host: &str,
        config: impl FnOnce(SocketAddr, &Path) -> String,
    ) -> Result<Self> {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let text = config(listen, &dir);
        let config = dir.join("warden.toml");
        std::fs::write(&config, text)?;
        // To files, not pipes: nobody drains a pipe during a run, and a full pipe would
        // stall Warden's logging and with it the data plane.
        let stderr_path = dir.join("warden.stderr");
        let stdout = File::create(dir.join("warden.stdout"))?;
        let stderr = File::create(&stderr_path)?;
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        // Per-connection logging would be measured as proxy overhead.
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let mut w = Self {
            child,
            listen,
            dir,
            stderr_path,
            host: host.to_string(),
        };
        if let Err(e) = w.wait_ready().await {
            w.stop();
            bail!(
                "{e:#}\n--- warden stderr ({}) ---\n{}",
                w.stderr_path.display(),
                w.stderr_tail(60)
            );
        }
        Ok(w)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn target(&self) -> Target {
        Target {
            addr: self.listen,
            host: self.host.clone(),
        }
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let target = self.target();
        let mut last = String::from("never accepted");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("warden exited during startup: {status}");
            }
            // Accepting is not enough: the route must answer too.
            match crate::modes::status::ping_once(&target, 1).await {
                Ok(()) => return Ok(()),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("warden not ready on {} after 15 s: {last}", self.listen)
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, a short grace period (Warden may drain), then SIGKILL.
    pub fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain signal to our own child, whose pid cannot be reused before we reap it.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        self.stop();
    }
}
