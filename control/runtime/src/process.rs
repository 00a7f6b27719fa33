//! A game server as a local process, e.g. `java -Xmx4G -jar server.jar nogui`.
//!
//! The process gets its own process group so a stop reaches the JVM and anything it forked.
//! Its pid is written next to its data: after Warden itself is killed and restarted, the
//! pid file tells whether the server is still running, so reconciliation neither starts a
//! second copy nor loses track of the first.
#![allow(unsafe_code)] // system calls with no safe wrapper here; each block says why it is sound

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::process::{Child, Command};
use tracing::{info, warn};

use super::{DataLocation, Runtime, RuntimeError};

const PID_FILE: &str = ".warden-server.pid";
const LOG_FILE: &str = "warden-server.log";

pub struct ProcessRuntime {
    command: Vec<String>,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

impl ProcessRuntime {
    pub fn new(command: Vec<String>, dir: PathBuf) -> Self {
        Self {
            command,
            dir,
            child: Mutex::new(None),
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join(PID_FILE)
    }

    /// The pid of a running server: ours, or one recorded by an earlier Warden.
    fn live_pid(&self) -> Option<i32> {
        {
            let mut child = self.child.lock();
            if let Some(c) = child.as_mut() {
                match c.try_wait() {
                    Ok(None) => return c.id().map(|p| p as i32),
                    _ => *child = None,
                }
            }
        }
        let pid: i32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // SAFETY: kill with signal 0 only checks that the process exists.
        (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    async fn start(&self) -> Result<(), RuntimeError> {
        if self.live_pid().is_some() {
            return Ok(());
        }
        let Some((program, args)) = self.command.split_first() else {
            return Err(RuntimeError::Other("empty command".into()));
        };
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        let child = Command::new(resolve_program(program))
            .args(args)
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| RuntimeError::Spawn {
                command: self.command.join(" "),
                source,
            })?;
        if let Some(pid) = child.id() {
            std::fs::write(self.pid_file(), pid.to_string())?;
            info!(pid, dir = %self.dir.display(), "server process started");
        }
        *self.child.lock() = Some(child);
        Ok(())
    }

    async fn stop(&self, timeout: Duration) -> Result<(), RuntimeError> {
        let Some(pid) = self.live_pid() else {
            let _ = std::fs::remove_file(self.pid_file());
            return Ok(());
        };
        // SAFETY: signalling the process group we created (pgid == pid).
        unsafe { libc::kill(-pid, libc::SIGTERM) };
        let until = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < until {
            if self.live_pid().is_none() {
                let _ = std::fs::remove_file(self.pid_file());
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        warn!(pid, "server ignored SIGTERM; killing it");
        // SAFETY: as above.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        for _ in 0..50 {
            if self.live_pid().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = std::fs::remove_file(self.pid_file());
        Ok(())
    }

    async fn running(&self) -> Result<bool, RuntimeError> {
        Ok(self.live_pid().is_some())
    }

    fn data(&self) -> DataLocation {
        DataLocation::Dir(self.dir.clone())
    }
}

/// `warden` as a command's first word is this very binary, so a config can run
/// `warden demo-server` (or any other subcommand) without knowing where it is installed,
/// and always at the same version as the appliance that starts it.
fn resolve_program(program: &str) -> std::ffi::OsString {
    if program == "warden" {
        if let Ok(exe) = std::env::current_exe() {
            return exe.into_os_string();
        }
    }
    program.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn start_stop_and_forced_kill() {
        let dir = std::env::temp_dir().join(format!("warden-proc-{}", std::process::id()));
        let rt = ProcessRuntime::new(vec!["sleep".into(), "30".into()], dir.clone());
        rt.start().await.unwrap();
        assert!(rt.running().await.unwrap());
        rt.start().await.unwrap();
        // A second runtime over the same directory (Warden restarted) sees it running.
        let again = ProcessRuntime::new(vec!["sleep".into(), "30".into()], dir.clone());
        assert!(again.running().await.unwrap());
        rt.stop(Duration::from_secs(5)).await.unwrap();
        assert!(!rt.running().await.unwrap());
        assert!(!again.running().await.unwrap());

        // A process that ignores SIGTERM is killed after the timeout.
        let stubborn = ProcessRuntime::new(
            vec!["sh".into(), "-c".into(), "trap '' TERM; sleep 30".into()],
            dir.clone(),
        );
        stubborn.start().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stubborn.stop(Duration::from_millis(500)).await.unwrap();
        assert!(!stubborn.running().await.unwrap());
        let _ = std::fs::remove_dir_all(dir);
    }
}
