//! The real peers tests talk to (see tests/peers/README.md): npm `minecraft-protocol`
//! backends (`backend.js`) and players (`player.js`), and PyPI `mcstatus` (`status.py`).
//! Peers print JSON lines on stdout; these helpers collect them so tests assert on what
//! the peers actually observed.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::paths::{peers_dir, python};
use crate::process::KillOnDrop;

/// `program script` in tests/peers, with no stdin and the peer's stderr shown in the
/// test's output.
fn peer(program: impl AsRef<OsStr>, script: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(peers_dir())
        .arg(script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

/// A `backend.js` process: one nmp server per version; killed when dropped.
pub struct Backend {
    pub child: KillOnDrop,
    pub events: Arc<Mutex<Vec<Value>>>,
    /// (version, port) for every server it runs.
    pub servers: Vec<(String, u16)>,
}

impl Backend {
    /// Starts nmp servers for `versions` (comma list or `all`) on ephemeral ports.
    pub fn start(versions: &str, extra: &[&str]) -> Backend {
        let mut child = peer("node", "backend.js")
            .args(["--versions", versions, "--base-port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn backend.js (is node installed?)");
        let stdout = child.stdout.take().expect("stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["event"] == "ready" || v["event"] == "fatal" {
                        let _ = tx.send(v.clone());
                    }
                    sink.lock().push(v);
                }
            }
        });
        let ready = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("backend.js never became ready");
        assert_eq!(ready["event"], "ready", "backend.js failed: {ready}");
        let servers = ready["servers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        Some((
                            s["version"].as_str()?.to_string(),
                            s["port"].as_u64()? as u16,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Backend {
            child: KillOnDrop(child),
            events,
            servers,
        }
    }

    pub fn port(&self, version: &str) -> u16 {
        self.servers
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, p)| *p)
            .expect("version served")
    }

    /// Events of one kind seen so far.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.events
            .lock()
            .iter()
            .filter(|e| e["event"] == kind)
            .cloned()
            .collect()
    }
}

/// Runs `player.js` with `args`; returns its exit success and its JSON lines.
pub fn player(args: &[&str]) -> (bool, Vec<Value>) {
    let out = peer("node", "player.js")
        .args(args)
        .output()
        .expect("spawn player.js");
    (out.status.success(), json_lines(&out.stdout))
}

/// Starts `player.js` in the background (for players that hold their session).
pub fn player_spawn(args: &[&str]) -> Child {
    peer("node", "player.js")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn player.js")
}

/// `player.js` options for a 1.20.4 player `name` (no Transfer: it waits where it is)
/// joining `host` through Warden's `port`, chatting once and leaving within `timeout_ms`.
fn chat_once_args(port: u16, host: &str, name: &str, timeout_ms: u64) -> Vec<String> {
    let port = port.to_string();
    let timeout = timeout_ms.to_string();
    [
        "--port",
        &port,
        "--version",
        "1.20.4",
        "--server-host",
        host,
        "--username",
        name,
        "--chat",
        "hi",
        "--timeout-ms",
        &timeout,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

/// A 1.20.4 player joining `host` through `port`, chatting once and leaving; waits for it.
pub fn chat_once(port: u16, host: &str, name: &str, timeout_ms: u64) -> (bool, Vec<Value>) {
    let args = chat_once_args(port, host, name, timeout_ms);
    player(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// [`chat_once`] in the background.
pub fn chat_once_spawn(port: u16, host: &str, name: &str, timeout_ms: u64) -> Child {
    let args = chat_once_args(port, host, name, timeout_ms);
    player_spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A background 1.21.4 player `name` joining `host` through Warden's `port`, with more
/// `player.js` options in `extra` (e.g. `--hold-ms`).
pub fn named_player_spawn(port: u16, name: &str, host: &str, extra: &[&str]) -> Child {
    let port = port.to_string();
    let mut args = vec![
        "--port",
        &port,
        "--version",
        "1.21.4",
        "--username",
        name,
        "--server-host",
        host,
    ];
    args.extend_from_slice(extra);
    player_spawn(&args)
}

/// Waits for a background player; returns its exit success and JSON lines.
pub fn player_wait(child: Child) -> (bool, Vec<Value>) {
    let out = child.wait_with_output().expect("player.js output");
    (out.status.success(), json_lines(&out.stdout))
}

/// Runs `status.py` (mcstatus) with `args`; returns its JSON lines.
pub fn mcstatus(args: &[&str]) -> Vec<Value> {
    let out = peer(python(), "status.py")
        .args(args)
        .output()
        .expect("run status.py (did scripts/install-test-deps.sh run?)");
    json_lines(&out.stdout)
}

/// The MOTD `mcstatus` reads from `addr` for `host` (empty if the ping failed).
pub fn motd(addr: &str, host: &str) -> String {
    mcstatus(&["--addr", addr, "--host", host])
        .first()
        .and_then(|s| s["motd"].as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(crate) fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs `node -e script` in tests/peers (where `minecraft-protocol` is installed) and
/// reads what it prints as JSON.
pub fn node_json<T: DeserializeOwned>(script: &str) -> T {
    let out = peer("node", "-e")
        .arg(script)
        .stderr(Stdio::piped())
        .output()
        .expect("run node (is it installed? are tests/peers/node_modules installed?)");
    assert!(
        out.status.success(),
        "node -e failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from node")
}

/// The versions nmp supports, ≥ 1.8 (what `backend.js --versions all` runs).
pub fn nmp_versions() -> Vec<String> {
    let all: Vec<String> =
        node_json("console.log(JSON.stringify(require('minecraft-protocol').supportedVersions))");
    all.into_iter().filter(|v| v != "1.7").collect()
}
