//! Harness for the integration tests: start the real `warden` binary and real peers
//! (npm `minecraft-protocol` players and servers, PyPI `mcstatus`), and read what they say.
//!
//! Peers print JSON lines on stdout (see tests/peers/README.md); the harness collects them
//! so tests assert on what the peers actually observed.

pub mod s3;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub fn peers_dir() -> PathBuf {
    repo_root().join("tests/peers")
}

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

/// The Python with mcstatus installed (scripts/install-test-deps.sh makes `.venv`).
pub fn python() -> PathBuf {
    std::env::var("WARDEN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv/bin/python"))
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "warden-test-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Limits high enough that tests (all from 127.0.0.1, one /24) never trip them.
pub const OPEN_LIMITS: &str =
    "status_per_second = 1000000\nlogin_per_second = 1000000\nconnections_per_bucket = 1000000\nmax_connections = 1000000\n";

/// A test config: `[edge]` with listen/upgrade socket plus `edge_extra`, `[edge.limits]`
/// (`limits`, or [`OPEN_LIMITS`]), `[metrics]`, then `rest` (servers, routes, status).
pub fn config(edge_extra: &str, limits: Option<&str>, rest: &str) -> String {
    format!(
        "[edge]\nlisten = \"127.0.0.1:{{port}}\"\nupgrade_sock = \"{{dir}}/up.sock\"\n{edge_extra}\n[edge.limits]\n{}\n[metrics]\nlisten = \"127.0.0.1:{{metrics}}\"\n{rest}",
        limits.unwrap_or(OPEN_LIMITS)
    )
}

/// A server entry routing `host` to `backend`.
pub fn server(id: &str, host: &str, backend: &str) -> String {
    format!("[[servers]]\nid = \"{id}\"\nhosts = [\"{host}\"]\nbackend = \"{backend}\"\n")
}

/// `[store]` and `[archive]` sections inside `dir`.
pub fn stores_in(dir: &Path) -> String {
    format!(
        "[store]\npath = \"{}/store\"\n[archive]\npath = \"{}/archive\"\n",
        dir.display(),
        dir.display()
    )
}

/// A managed `[[servers]]` entry: `backend.js` (protocol `version`) on `port`, started by
/// Warden as a process in `data`, asleep after `sleep_after`.
pub fn node_server(id: &str, host: &str, port: u16, data: &Path, sleep_after: &str) -> String {
    let _ = std::fs::create_dir_all(data);
    format!(
        "{}sleep_after = \"{sleep_after}\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\n\
         runtime = {{ kind = \"process\", command = [\"node\", \"{}\", \"--version\", \"1.20.4\", \"--port\", \"{port}\"], dir = \"{}\" }}\n",
        server(id, host, &format!("127.0.0.1:{port}")),
        peers_dir().join("backend.js").display(),
        data.display()
    )
}

/// Polls `ok` every 200 ms until it holds; panics with `what` and `log()` after `within`.
pub fn wait_for(
    what: &str,
    within: Duration,
    log: impl Fn() -> String,
    mut ok: impl FnMut() -> bool,
) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}\n{}", log());
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

pub fn metric_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A minimal HTTP/1.1 request (Connection: close): (status, body). Status 0 if the
/// connection failed.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or("");
    let kind = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/json\r\n".to_string()
    };
    if write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}{kind}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .is_err()
    {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // Chunked bodies (axum streams some): join the chunks.
    let body = if out
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A GET's body, enough for /metrics; None if the connection failed.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    match http_request(addr, "GET", path, None, None) {
        (0, _) => None,
        (_, body) => Some(body),
    }
}

/// A `backend.js` process: one nmp server per version.
pub struct Backend {
    pub child: Child,
    pub events: Arc<Mutex<Vec<Value>>>,
    /// (version, port) for every server it runs.
    pub servers: Vec<(String, u16)>,
}

impl Backend {
    /// Starts nmp servers for `versions` (comma list or `all`) on ephemeral ports.
    pub fn start(versions: &str, extra: &[&str]) -> Backend {
        let mut child = Command::new("node")
            .current_dir(peers_dir())
            .args(["backend.js", "--versions", versions, "--base-port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
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
                    sink.lock().expect("events").push(v);
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
            child,
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
            .expect("events")
            .iter()
            .filter(|e| e["event"] == kind)
            .cloned()
            .collect()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `player.js` with `args`; returns its exit success and its JSON lines.
pub fn player(args: &[&str]) -> (bool, Vec<Value>) {
    let out = Command::new("node")
        .current_dir(peers_dir())
        .arg("player.js")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("spawn player.js");
    (out.status.success(), json_lines(&out.stdout))
}

/// Starts `player.js` in the background (for players that hold their session).
pub fn player_spawn(args: &[&str]) -> Child {
    Command::new("node")
        .current_dir(peers_dir())
        .arg("player.js")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn player.js")
}

/// `len` incompressible bytes (xorshift), like region files; the same `seed` gives the
/// same bytes. Big worlds make archive and restore take long enough to interrupt.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
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
    let out = Command::new(python())
        .current_dir(peers_dir())
        .arg("status.py")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
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

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Sends `bytes` on a fresh connection and reports how the server ended it.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> RawOutcome {
    let start = Instant::now();
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) => {
            return RawOutcome {
                closed_after: None,
                reply: Vec::new(),
                error: Some(e.to_string()),
            }
        }
    };
    let _ = s.write_all(bytes);
    read_until_close(&mut s, start, wait)
}

/// Reads until EOF/reset or `wait` passes.
pub fn read_until_close(s: &mut TcpStream, start: Instant, wait: Duration) -> RawOutcome {
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = wait.saturating_sub(start.elapsed());
        if left.is_zero() {
            return RawOutcome {
                closed_after: None,
                reply,
                error: None,
            };
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => {
                return RawOutcome {
                    closed_after: Some(start.elapsed()),
                    reply,
                    error: None,
                }
            }
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return RawOutcome {
                    closed_after: None,
                    reply,
                    error: None,
                }
            }
            Err(_) => {
                return RawOutcome {
                    closed_after: Some(start.elapsed()),
                    reply,
                    error: None,
                }
            }
        }
    }
}

#[derive(Debug)]
pub struct RawOutcome {
    /// When the server closed the connection (None: still open when we stopped waiting).
    pub closed_after: Option<Duration>,
    pub reply: Vec<u8>,
    pub error: Option<String>,
}

/// The versions nmp supports, ≥ 1.8 (what `backend.js --versions all` runs).
pub fn nmp_versions() -> Vec<String> {
    let out = Command::new("node")
        .current_dir(peers_dir())
        .args([
            "-e",
            "console.log(JSON.stringify(require('minecraft-protocol').supportedVersions))",
        ])
        .output()
        .expect("node");
    let all: Vec<String> = serde_json::from_slice(&out.stdout).expect("versions JSON");
    all.into_iter().filter(|v| v != "1.7").collect()
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

/// A `redis-server` on a free loopback port; killed when dropped.
pub struct Redis {
    pub child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server not installed (scripts/install-test-deps.sh installs it)");
        assert!(
            wait_listening(
                SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(10)
            ),
            "redis-server did not start"
        );
        Redis { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP connection to `dst` from the loopback address `src` (any 127.x.y.z): spreads test
/// clients over source addresses and /24s. Connecting gives up after `within`.
pub fn connect_from(
    src: std::net::Ipv4Addr,
    dst: SocketAddr,
    within: Duration,
) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(dst), Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((src, 0)).into())?;
    socket.connect_timeout(&dst.into(), within)?;
    Ok(socket.into())
}

/// Reads the next Minecraft frame (its body: packet id and fields) within `within`, with
/// `dec` keeping what arrived beyond it; None on close, timeout or a frame over 1 MiB.
pub fn read_frame(
    s: &mut TcpStream,
    dec: &mut warden_wire::FrameDecoder,
    within: Duration,
) -> Option<bytes::Bytes> {
    let until = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(Some(frame)) = dec.next_frame(1 << 20) {
            return Some(frame);
        }
        let left = until.checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => dec.extend(&buf[..n]),
        }
    }
}
