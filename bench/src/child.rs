//! A proxy under test as a child process, and the guard that ends it.
//!
//! Every proxy the bench starts (Warden, Infrarust, lazymc and whatever those start in
//! turn) runs in a process group of its own, with its output in files, and is ended as a
//! group when its guard drops: a failed or interrupted run leaves nothing listening.

use std::fs::File;
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub struct Proc {
    child: Child,
    stderr_path: PathBuf,
    /// Set once the group has been sent SIGKILL; nothing is signalled after that.
    ended: bool,
}

impl Proc {
    /// Spawns `cmd` in a new process group, stdin closed and stdout/stderr going to
    /// `dir/NAME.stdout` and `dir/NAME.stderr`.
    pub fn spawn(mut cmd: Command, dir: &Path, name: &str) -> Result<Self> {
        // To files, not pipes: nobody drains a pipe during a run, and a full pipe would
        // stall the proxy's logging and with it its data plane.
        let stderr_path = dir.join(format!("{name}.stderr"));
        let stdout = File::create(dir.join(format!("{name}.stdout")))?;
        let stderr = File::create(&stderr_path)?;
        cmd.stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        // Per-connection logging would be measured as proxy overhead.
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {:?}", cmd.get_program()))?;
        Ok(Self {
            child,
            stderr_path,
            ended: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Polls `probe` every 100 ms until it succeeds, the process exits, or `limit`
    /// passes; on failure the error carries the process's stderr.
    pub async fn wait_ready<F, Fut>(&mut self, what: &str, limit: Duration, probe: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let deadline = Instant::now() + limit;
        let mut last: String;
        let outcome = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break format!("{what} exited during startup: {status}"),
                Ok(None) => {}
                Err(e) => break format!("{what}: wait: {e}"),
            }
            match probe().await {
                Ok(()) => return Ok(()),
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() >= deadline {
                break format!("{what} not ready after {} s: {last}", limit.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.stop();
        bail!(
            "{outcome}\n--- stderr ({}) ---\n{}",
            self.stderr_path.display(),
            self.stderr_tail(60)
        )
    }

    /// SIGTERM to the group, up to 5 s for the leader to exit (a proxy may drain), then
    /// SIGKILL to the group, so children the proxy started go too.
    pub fn stop(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        // The leader's pid is the group id; it cannot be reused before we reap the leader.
        let group = -(self.child.id() as libc::pid_t);
        // SAFETY: plain signals to our own child's process group.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; the leader is not reaped yet if it still runs, and if it was
        // reaped just now the group id stays reserved while any member remains.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}
