//! The peer proxies `peers` runs beside Warden: a config each, generated here, and the
//! process started in front of the bench backend.
//!
//! Configs follow each project's documented format at the pinned versions (Infrarust
//! 1.6.3's `config.yaml` plus a per-domain proxy file; lazymc 0.2.11's `lazymc.toml`), set
//! as a user would for a fair measurement: no rate limits, logging at warnings, no sleep.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::child::Proc;
use crate::modes::{login::login_once, status::ping_once};
use crate::proto::Target;
use crate::warden::{free_port, unique_dir, BENCH_HOST};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Infrarust,
    Lazymc,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Infrarust => "infrarust",
            Kind::Lazymc => "lazymc",
        }
    }
}

/// A started peer and where clients reach it.
pub struct Peer {
    pub proc: Proc,
    pub target: Target,
    /// Its config and logs.
    pub dir: PathBuf,
}

/// Refuses paths that would need escaping inside a YAML/TOML string or a shell word.
fn plain(p: &Path) -> Result<String> {
    let s = p.to_str().context("path is not UTF-8")?;
    if s.chars()
        .any(|c| matches!(c, '"' | '\\' | '\'' | ' ' | '\n'))
    {
        bail!("path {s:?} has quotes, backslashes or spaces; use a plainer one");
    }
    Ok(s.to_string())
}

fn infrarust_files(dir: &Path, listen: SocketAddr, backend: SocketAddr) -> Result<Vec<OsString>> {
    let proxies = dir.join("proxies");
    std::fs::create_dir_all(&proxies)?;
    // No `filters` section: no rate limiter, no ban list. Status cached as Warden does.
    let config = format!(
        r#"bind: "{listen}"
handshake_timeout_secs: 5
status_request_timeout_secs: 5
file_provider:
  proxies_path:
    - "{proxies}"
  watch: false
cache:
  status_ttl_seconds: 5
  max_status_entries: 1000
logging:
  min_level: "warn"
"#,
        proxies = plain(&proxies)?,
    );
    std::fs::write(dir.join("config.yaml"), config)?;
    let route = format!(
        r#"domains:
  - "{BENCH_HOST}"
addresses:
  - "{backend}"
sendProxyProtocol: false
proxyMode: passthrough
"#
    );
    std::fs::write(proxies.join("bench.yaml"), route)?;
    Ok(vec![
        "--config-path".into(),
        dir.join("config.yaml").into(),
        "--no-interactive".into(),
    ])
}

fn lazymc_files(dir: &Path, listen: SocketAddr, backend: SocketAddr) -> Result<Vec<OsString>> {
    // lazymc starts and stops the server itself. Here the "server" is `warden-bench hold`,
    // a process that does nothing, and lazymc's server address is the bench backend that
    // already serves: lazymc sees it answer status and treats the server as started.
    let exe = plain(&std::env::current_exe().context("own executable")?)?;
    let config = format!(
        r#"[public]
address = "{listen}"
version = "1.21"
protocol = 767

[server]
directory = "."
command = "{exe} hold"
address = "{backend}"
freeze_process = false
wake_on_start = true
wake_on_crash = true
wake_whitelist = false
block_banned_ips = false
drop_banned_ips = false

[time]
# Never sleep during a run (about 31 years).
sleep_after = 1000000000

[join]
methods = ["hold"]

[join.hold]
timeout = 25

[rcon]
enabled = false

[advanced]
rewrite_server_properties = false

[config]
version = "0.2.11"
"#
    );
    std::fs::write(dir.join("lazymc.toml"), config)?;
    Ok(vec![
        "start".into(),
        "--config".into(),
        dir.join("lazymc.toml").into(),
    ])
}

/// Writes `kind`'s config in a fresh directory, starts `bin` on a free loopback port in
/// front of `backend`, and waits until both a status ping and a login pass through it.
pub async fn start(kind: Kind, bin: &Path, backend: SocketAddr) -> Result<Peer> {
    let dir: PathBuf = unique_dir()?;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let args = match kind {
        Kind::Infrarust => infrarust_files(&dir, listen, backend)?,
        Kind::Lazymc => lazymc_files(&dir, listen, backend)?,
    };
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(&dir);
    let mut proc = Proc::spawn(cmd, &dir, kind.name())?;
    let target = Target {
        addr: listen,
        host: BENCH_HOST.into(),
    };
    // lazymc answers status itself while its server "starts"; only a login that reaches
    // the backend shows the data path is up.
    proc.wait_ready(kind.name(), Duration::from_secs(45), || async {
        ping_once(&target, 1).await.context("status")?;
        login_once(&target, "ack").await.context("login")
    })
    .await?;
    Ok(Peer { proc, target, dir })
}

/// What `bin --version` prints (first line), bounded in time; the error text otherwise.
pub async fn version_of(bin: &Path) -> String {
    let out = tokio::process::Command::new(bin)
        .arg("--version")
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(10), out).await {
        Ok(Ok(o)) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        Ok(Err(e)) => format!("--version failed: {e}"),
        Err(_) => "--version timed out".into(),
    }
}
