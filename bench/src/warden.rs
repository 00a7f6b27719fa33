//! Runs the Warden under test as a child process in front of the bench backend.
//!
//! The bench starts Warden itself so the direct and proxied numbers come from the same
//! machine state in the same run, and so it knows the pid whose memory it reports.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::child::Proc;
use crate::proto::Target;

/// The route every bench client names in its handshake.
pub const BENCH_HOST: &str = "bench.test";

pub struct Warden {
    proc: Proc,
    pub listen: SocketAddr,
    pub dir: PathBuf,
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
        let mut cmd = Command::new(bin);
        cmd.arg("run").arg("--config").arg(&config);
        let mut proc = Proc::spawn(cmd, &dir, "warden")?;
        let target = Target {
            addr: listen,
            host: host.to_string(),
        };
        // Accepting is not enough: the route must answer too.
        proc.wait_ready("warden", Duration::from_secs(15), || {
            crate::modes::status::ping_once(&target, 1)
        })
        .await?;
        Ok(Self {
            proc,
            listen,
            dir,
            host: host.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn target(&self) -> Target {
        Target {
            addr: self.listen,
            host: self.host.clone(),
        }
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    pub fn stderr_tail(&self, lines: usize) -> String {
        self.proc.stderr_tail(lines)
    }

    /// SIGTERM, a short grace period (Warden may drain), then SIGKILL, to its whole group.
    pub fn stop(&mut self) {
        self.proc.stop();
    }
}
