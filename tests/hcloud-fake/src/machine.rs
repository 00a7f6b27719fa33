//! The fake's "VMs": a created server becomes a real process (normally `warden run`) once
//! it has booted, configured from its cloud-init user data, and deleting the server ends
//! the process and everything it started, as destroying a VM would.

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::cloudinit::write_files;

/// SIGKILLs every process working in a directory (and its group): the test kit's, also
/// used by [`crate::FakeProcess`] after the fake is gone.
pub use warden_testkit::kill_processes_under;

/// Where the fake finds Warden's config in the user data.
pub const CONFIG_PATH: &str = "/etc/warden/warden.toml";

/// What to run for each server, and where its machine directories go.
#[derive(Debug, Clone)]
pub struct MachinesConfig {
    /// Run as `<warden_bin> run --config <dir>/<name>/warden.toml`.
    pub warden_bin: PathBuf,
    /// Each server gets `<dir>/<server name>/`.
    pub dir: PathBuf,
}

/// One server's machine as `/_fake/state` shows it.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub dir: PathBuf,
    /// The process (a process group leader), once started.
    pub pid: Option<u32>,
    /// Why no process started (cloud-init failed, the binary did not run).
    pub error: Option<String>,
    /// How the process ended: "exit 0", "signal 15".
    pub exit: Option<String>,
    /// Every write_files path, as written under `files/`.
    pub files: Vec<String>,
}

/// Boots a server's machine: writes its files and starts the process. A machine whose
/// cloud-init fails still "boots" (the server runs) but starts nothing; `error` says why.
pub fn boot(
    cfg: &MachinesConfig,
    name: &str,
    id: u64,
    user_data: Option<&str>,
) -> (Machine, Option<tokio::process::Child>) {
    let dir = cfg.dir.join(name);
    let mut m = Machine {
        dir: dir.clone(),
        ..Default::default()
    };
    // A server reusing a deleted one's name gets a fresh disk; the old one is kept aside.
    if dir.exists() {
        let _ = std::fs::rename(&dir, cfg.dir.join(format!("{name}~before-{id}")));
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        m.error = Some(format!("cannot create {}: {e}", dir.display()));
        return (m, None);
    }
    let files = match user_data.map(write_files) {
        None => Err("server was created without user_data".to_string()),
        Some(r) => r,
    };
    let files = match files {
        Ok(f) => f,
        Err(e) => {
            m.error = Some(e);
            return (m, None);
        }
    };
    let mut config = None;
    for f in &files {
        m.files.push(f.path.clone());
        if f.path == CONFIG_PATH {
            config = Some(f.content.clone());
        }
        let Some(rel) = relative(&f.path) else {
            continue;
        };
        let target = dir.join("files").join(rel);
        if let Some(parent) = target.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(target, &f.content);
    }
    let Some(config) = config else {
        m.error = Some(format!("user_data writes no {CONFIG_PATH}"));
        return (m, None);
    };
    let Ok(config) = String::from_utf8(config) else {
        m.error = Some(format!("{CONFIG_PATH} is not UTF-8"));
        return (m, None);
    };
    let config = config
        .replace("{machine_dir}", &dir.to_string_lossy())
        .replace("{ipv4}", &crate::api::ipv4(id));
    let config_path = dir.join("warden.toml");
    if let Err(e) = std::fs::write(&config_path, config) {
        m.error = Some(format!("cannot write {}: {e}", config_path.display()));
        return (m, None);
    }
    match spawn(cfg, &dir, &config_path, name, id) {
        Ok(child) => {
            m.pid = child.id();
            (m, Some(child))
        }
        Err(e) => {
            m.error = Some(format!("cannot run {}: {e}", cfg.warden_bin.display()));
            (m, None)
        }
    }
}

/// A write_files path under `files/`: absolute made relative, no `..`.
fn relative(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn spawn(
    cfg: &MachinesConfig,
    dir: &Path,
    config: &Path,
    name: &str,
    id: u64,
) -> std::io::Result<tokio::process::Child> {
    let log = std::fs::File::create(dir.join("warden.log"))?;
    let err = log.try_clone()?;
    tokio::process::Command::new(&cfg.warden_bin)
        .arg("run")
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .env("WARDEN_HCLOUD_SERVER_ID", id.to_string())
        .env("WARDEN_HCLOUD_SERVER_NAME", name)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        // Its own process group, so deleting the server can end the whole tree.
        .process_group(0)
        .spawn()
}

/// How a machine process ended, for the state.
pub fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit {c}"),
            (_, Some(sig)) => format!("signal {sig}"),
            _ => "ended".into(),
        },
        Err(e) => format!("unknown: {e}"),
    }
}

fn group_alive(pgid: Pid) -> bool {
    killpg(pgid, None).is_ok()
}

/// Ends a machine like destroying its VM: SIGTERM to its process group, SIGKILL after
/// `grace` if any member is left, then SIGKILL to anything else still running in its
/// directory (processes that made groups of their own, such as game servers).
pub async fn destroy(pid: u32, dir: &Path, grace: Duration) {
    let pgid = Pid::from_raw(pid as i32);
    let _ = killpg(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while group_alive(pgid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if group_alive(pgid) {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    kill_processes_under(dir);
}
