//! The graceful-upgrade socket, kept where only Warden's user can reach it.
//!
//! Over `edge.upgrade_sock` a running Warden hands its listening sockets to the new binary.
//! Whoever can bind or connect to that path first could receive them, so it must not live
//! in a world-writable directory such as `/tmp`: by default it is
//! `<store.path>/run/upgrade.sock`, in a directory of mode 0700, and the socket itself is
//! made 0600 (pingora creates it 0666).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::warn;

use crate::config::Config;

/// Where the socket is: the configured path or the default under the state directory.
pub fn path(cfg: &Config) -> PathBuf {
    cfg.edge
        .upgrade_sock
        .clone()
        .unwrap_or_else(|| default_path(&cfg.store.path))
}

/// The default: `<store.path>/run/upgrade.sock`.
pub fn default_path(store: &Path) -> PathBuf {
    store.join("run").join("upgrade.sock")
}

/// Makes the socket's directory ready. The default directory is created with mode 0700
/// (and tightened if it exists); a configured path in a world-writable directory is
/// warned about. Only the new process of an upgrade needs the directory, so elsewhere a
/// failure is a warning.
pub fn prepare(cfg: &Config, upgrading: bool) -> anyhow::Result<PathBuf> {
    let path = path(cfg);
    let Some(dir) = path.parent() else {
        return Ok(path);
    };
    if cfg.edge.upgrade_sock.is_some() {
        if let Ok(meta) = std::fs::metadata(dir) {
            if meta.permissions().mode() & 0o002 != 0 {
                warn!(socket = %path.display(), "edge.upgrade_sock is in a world-writable directory: another local user could take the listeners during an upgrade; leave it unset to use the state directory");
            }
        }
        return Ok(path);
    }
    let made = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)));
    match made {
        Ok(()) => Ok(path),
        Err(e) if upgrading => Err(e).with_context(|| {
            format!(
                "preparing {} for the upgrade socket (set store.path or edge.upgrade_sock)",
                dir.display()
            )
        }),
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cannot prepare the upgrade socket's directory; a graceful upgrade will fail until it exists");
            Ok(path)
        }
    }
}

/// While the new process waits for the listeners, keeps the socket at mode 0600. Call
/// [`Restrict::done`] once pingora has received them.
pub struct Restrict {
    stop: Arc<AtomicBool>,
    path: PathBuf,
}

impl Restrict {
    pub fn start(path: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, p) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                restrict(&p);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self { stop, path }
    }

    pub fn done(self) {
        self.stop.store(true, Ordering::Relaxed);
        restrict(&self.path);
    }
}

fn restrict(path: &Path) {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() && meta.permissions().mode() & 0o777 != 0o600 {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
}
