//! The `warden-hcloud-fake` binary as a test sees it: started on a free port, read through
//! its admin endpoints, and on drop stopped together with every machine it booted.

use std::io::{BufRead, BufReader, Read as _};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use warden_testkit::http_request;

use crate::images::Snapshot;
use crate::machine::kill_processes_under;

/// How long the fake may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `listening …` line read.
const MAX_LINE: u64 = 4096;

/// The binary: `$WARDEN_HCLOUD_FAKE_BIN`, else next to the running test binary
/// (target/<profile>/warden-hcloud-fake; build it with `cargo build -p warden-hcloud-fake`).
pub fn fake_bin() -> PathBuf {
    if let Ok(p) = std::env::var("WARDEN_HCLOUD_FAKE_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("warden-hcloud-fake")))
        .unwrap_or_else(|| PathBuf::from("warden-hcloud-fake"))
}

/// How to start the fake; [`Default`] is a plain API with token `test-token`.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    pub token: String,
    pub hour_secs: Option<f64>,
    pub boot_delay_ms: Option<u64>,
    /// With `machines_dir`: each server runs `<warden_bin> run --config …`.
    pub warden_bin: Option<PathBuf>,
    pub machines_dir: Option<PathBuf>,
    /// SIGTERM → SIGKILL grace for machines (the binary's default is 5000).
    pub stop_grace_ms: Option<u64>,
    /// Faults from the start (the JSON `POST /_fake/faults` takes).
    pub faults: Option<Value>,
    /// Snapshots held from the start, oldest first; empty: the binary's default (1001,
    /// labelled `warden-node=1`).
    pub snapshots: Vec<Snapshot>,
    /// The binary; [`fake_bin`] if unset.
    pub bin: Option<PathBuf>,
}

impl Default for FakeOptions {
    fn default() -> FakeOptions {
        FakeOptions {
            token: "test-token".into(),
            hour_secs: None,
            boot_delay_ms: None,
            warden_bin: None,
            machines_dir: None,
            stop_grace_ms: None,
            faults: None,
            snapshots: Vec::new(),
            bin: None,
        }
    }
}

/// A running `warden-hcloud-fake`. Dropping it SIGTERMs the fake (which ends its
/// machines), SIGKILLs it if it lingers, then SIGKILLs anything still running in the
/// machines directory, so no process outlives the test.
pub struct FakeProcess {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    /// How long the fake gets to end its machines and exit on drop.
    stop_wait: Duration,
    /// `http://127.0.0.1:PORT/v1`, what a Hetzner client takes as its base URL.
    pub url: String,
    pub addr: SocketAddr,
    pub token: String,
    pub machines_dir: Option<PathBuf>,
}

impl FakeProcess {
    /// Starts the fake and waits for its `listening` line.
    pub fn start(opts: FakeOptions) -> std::io::Result<FakeProcess> {
        let bin = opts.bin.clone().unwrap_or_else(fake_bin);
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--token",
            &opts.token,
            "--exit-with-parent",
        ]);
        if let Some(h) = opts.hour_secs {
            cmd.arg("--hour-secs").arg(h.to_string());
        }
        if let Some(b) = opts.boot_delay_ms {
            cmd.arg("--boot-delay-ms").arg(b.to_string());
        }
        if let Some(g) = opts.stop_grace_ms {
            cmd.arg("--stop-grace-ms").arg(g.to_string());
        }
        if let Some(w) = &opts.warden_bin {
            cmd.arg("--warden-bin").arg(w);
        }
        if let Some(d) = &opts.machines_dir {
            cmd.arg("--machines-dir").arg(d);
        }
        if let Some(f) = &opts.faults {
            cmd.arg("--faults").arg(f.to_string());
        }
        for s in &opts.snapshots {
            cmd.arg("--snapshot").arg(s.to_string());
        }
        // Its own group: a signal meant for the test run does not reach it twice.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", bin.display())))?;
        let Some(stdout) = child.stdout.take() else {
            abandon(&mut child);
            return Err(std::io::Error::other("no stdout"));
        };
        // Read the first line on a thread, so a fake that never says it stays bounded.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            let read = (&mut stdout).take(MAX_LINE).read_line(&mut line);
            let _ = tx.send((read.map(|_| line), stdout));
        });
        let (line, stdout) = match rx.recv_timeout(START_TIMEOUT) {
            Ok((Ok(line), stdout)) => (line, stdout),
            Ok((Err(e), _)) => {
                abandon(&mut child);
                return Err(std::io::Error::other(format!("{}: {e}", bin.display())));
            }
            Err(_) => {
                abandon(&mut child);
                return Err(std::io::Error::other(format!(
                    "{} did not say where it listens within {START_TIMEOUT:?}",
                    bin.display()
                )));
            }
        };
        let parsed = line
            .trim()
            .strip_prefix("listening ")
            .map(str::to_string)
            .and_then(|url| {
                let addr = url
                    .strip_prefix("http://")?
                    .strip_suffix("/v1")?
                    .parse::<SocketAddr>()
                    .ok()?;
                Some((url, addr))
            });
        let Some((url, addr)) = parsed else {
            abandon(&mut child);
            return Err(std::io::Error::other(format!(
                "{} did not say where it listens (got {line:?})",
                bin.display()
            )));
        };
        Ok(FakeProcess {
            child,
            _stdout: stdout,
            stop_wait: Duration::from_millis(opts.stop_grace_ms.unwrap_or(5000))
                + Duration::from_secs(3),
            url,
            addr,
            token: opts.token,
            machines_dir: opts.machines_dir.map(|d| d.canonicalize().unwrap_or(d)),
        })
    }

    /// The fake's pid (it leads its own process group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An API request with the token: (status, body). Status 0 if the connection failed.
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http_request(self.addr, method, path, Some(&self.token), body)
    }

    /// An API request with a JSON body (if any): the status and the JSON answer (`Null`
    /// if the answer is not JSON; status 0 if the connection failed).
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let text = body.map(Value::to_string);
        let (status, answer) = self.request(method, path, text.as_deref());
        (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
    }

    /// Polls `GET /v1/actions/{id}` until the action leaves `running`: the action, or
    /// why not within `timeout` (still running, or an answer that is not an action).
    pub fn wait_action(&self, id: u64, timeout: Duration) -> Result<Value, String> {
        let end = Instant::now() + timeout;
        loop {
            let (status, body) = self.api("GET", &format!("/v1/actions/{id}"), None);
            let action = &body["action"];
            if status != 200 || !action.is_object() {
                return Err(format!("GET /v1/actions/{id}: {status} {body}"));
            }
            if action["status"] != "running" {
                return Ok(action.clone());
            }
            if Instant::now() >= end {
                return Err(format!(
                    "action {id} still running after {timeout:?}: {body}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An admin request (no token) whose answer must be `want` with a JSON body.
    fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        want: u16,
    ) -> Result<Value, String> {
        let (status, text) = http_request(self.addr, method, path, None, body);
        match serde_json::from_str(&text) {
            Ok(v) if status == want => Ok(v),
            _ => Err(format!("{method} {path}: {status} {text}")),
        }
    }

    /// `GET /_fake/state` (the crate README lists its fields).
    pub fn try_state(&self) -> Result<Value, String> {
        self.admin("GET", "/_fake/state", None, 200)
    }

    /// [`FakeProcess::try_state`] for tests: panics if the fake does not answer, which
    /// in a test is a failed test.
    pub fn state(&self) -> Value {
        self.try_state().unwrap_or_else(|e| panic!("{e}"))
    }

    /// `POST /_fake/faults`: the faults now in force, or why they were refused.
    pub fn try_set_faults(&self, faults: &Value) -> Result<Value, String> {
        self.admin("POST", "/_fake/faults", Some(&faults.to_string()), 200)
    }

    /// [`FakeProcess::try_set_faults`] for tests: panics if refused.
    pub fn set_faults(&self, faults: &Value) -> Value {
        self.try_set_faults(faults)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `POST /_fake/snapshots`: a snapshot newer than every image so far; its image JSON.
    pub fn add_snapshot(&self, snapshot: &Snapshot) -> Result<Value, String> {
        let body = serde_json::json!({"id": snapshot.id, "labels": snapshot.labels});
        self.admin("POST", "/_fake/snapshots", Some(&body.to_string()), 201)
    }

    /// Polls the state until `pred` holds or `timeout` passes; the last state either way.
    pub fn wait_state(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> (bool, Value) {
        let end = Instant::now() + timeout;
        loop {
            let s = self.try_state().unwrap_or(Value::Null);
            if pred(&s) {
                return (true, s);
            }
            if Instant::now() >= end {
                return (false, s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The machine directory of a server, if machines are on.
    pub fn machine_dir(&self, name: &str) -> Option<PathBuf> {
        self.machines_dir.as_deref().map(|d| d.join(name))
    }
}

/// Whether a process lives: it exists, is not a zombie and is not already exiting (a
/// SIGKILLed process with many threads takes a moment to become a zombie).
pub fn pid_alive(pid: u32) -> bool {
    /// PF_EXITING in the flags of /proc/PID/stat.
    const EXITING: u64 = 0x4;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // state is the field after the parenthesised command, flags the seventh from there
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return false;
    };
    let mut fields = rest.split(' ');
    let state = fields.next().unwrap_or("X");
    let flags = fields
        .nth(5)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    !matches!(state, "Z" | "X" | "x") && flags & EXITING == 0
}

/// Kills a fake that failed to start (it has booted no machine yet) and reaps it.
fn abandon(child: &mut Child) {
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

fn stop(child: &mut Child, machines: Option<&Path>, wait: Duration) {
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGTERM);
    let end = Instant::now() + wait;
    let mut exited = false;
    while Instant::now() < end && !exited {
        exited = matches!(child.try_wait(), Ok(Some(_)));
        if !exited {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if !exited {
        // Not reaped yet, so the group id is still the fake's.
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
    // SIGKILL takes effect asynchronously: kill until nothing is left (at most 5 s), so
    // the machines are gone when the guard has dropped.
    if let Some(dir) = machines {
        let end = Instant::now() + Duration::from_secs(5);
        kill_processes_under(dir);
        while !processes_under(dir).is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
            kill_processes_under(dir);
        }
    }
}

/// The live processes (not zombies) whose working directory is `dir` or below it.
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            (cwd.starts_with(&dir) && pid_alive(pid)).then_some(pid)
        })
        .collect()
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        stop(
            &mut self.child,
            self.machines_dir.as_deref(),
            self.stop_wait,
        );
    }
}
