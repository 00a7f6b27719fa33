//! Process guards: every process a test starts ends with the test, pass or fail. A child
//! is killed when its guard drops; game servers (which Warden deliberately lets outlive
//! it) are found by their pid file or working directory and killed with their group.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Child;

/// A child process, SIGKILLed and reaped when dropped, however the test ends.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGKILLs every process whose working directory is `dir` or below it, with its process
/// group (the process runtime makes each server a group leader). This catches a server
/// whatever happened to its pid file: a start racing the test's end, a stop that gave up.
pub fn kill_processes_under(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else { return };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id() as i32;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if !cwd.starts_with(&dir) {
            continue;
        }
        // SAFETY: getpgid/kill on a pid read from /proc; at worst it no longer exists.
        unsafe {
            let pgid = libc::getpgid(pid);
            if pgid == pid {
                libc::kill(-pid, libc::SIGKILL);
            }
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Kills, on drop, the game server a process runtime started in `dir` (its pid file),
/// since Warden deliberately lets servers outlive it.
pub struct ServerProcess(pub PathBuf);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join(".warden-server.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill(2) on the process group Warden created for the server.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
        }
        kill_processes_under(&self.0);
    }
}
