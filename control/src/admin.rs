//! The local admin socket: operator commands from the `warden` CLI on the same node
//! (`warden restart ID`). A Unix socket with mode 0600 in the store directory, so only the
//! appliance's own user can drive it; the HTTP API for remote dashboards comes separately.
//!
//! Protocol: one request line, one response line (`ok …` or `error …`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

use crate::lifecycle::Engine;

/// Longest request line accepted.
const MAX_REQUEST: u64 = 512;
/// A client must send its request promptly.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A restart may wait for a start (start_timeout, twice) plus a stop.
const CLI_WAIT: Duration = Duration::from_secs(15 * 60);

/// The socket's place: next to the store's data.
pub fn socket_path(store_dir: &Path) -> PathBuf {
    store_dir.join("admin.sock")
}

pub async fn serve(path: PathBuf, engine: Arc<Engine>) {
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            warn!(socket = %path.display(), error = %e, "admin socket unavailable; `warden restart` will not reach this process");
            return;
        }
    };
    if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
        warn!(socket = %path.display(), error = %e, "could not restrict the admin socket");
    }
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                let engine = engine.clone();
                tokio::spawn(async move { handle(conn, &engine).await });
            }
            Err(e) => {
                warn!(error = %e, "admin socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(conn: UnixStream, engine: &Engine) {
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    let mut limited = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
    let answer = match tokio::time::timeout(REQUEST_TIMEOUT, limited.read_line(&mut line)).await {
        Ok(Ok(_)) => run(line.trim(), engine).await,
        Ok(Err(e)) => format!("error reading the request: {e}"),
        Err(_) => "error: no request within 5 s".to_string(),
    };
    let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
}

async fn run(request: &str, engine: &Engine) -> String {
    let mut words = request.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        _ if request.split_whitespace().count() > 3 => {
            format!("error: unknown request `{request}` (try: restart ID [IMAGE])")
        }
        (Some("restart"), Some(id), image) => {
            info!(server = id, image, "admin: warm-swap restart requested");
            match engine.restart(id, image).await {
                Ok(r) => format!(
                    "ok restarted {id}{} in {:.1} s: {} players moved to the anteroom, {} told to rejoin",
                    r.image.map(|i| format!(" on {i}")).unwrap_or_default(),
                    r.secs,
                    r.transferred,
                    r.told_to_rejoin
                ),
                Err(e) => format!("error: {e}"),
            }
        }
        _ => format!("error: unknown request `{request}` (try: restart ID [IMAGE])"),
    }
}

/// The CLI side: sends `request` and returns the answer, or fails with it.
pub fn request(path: &Path, request: &str) -> anyhow::Result<String> {
    let mut conn = std::os::unix::net::UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to {} (is `warden run` running with this config?)",
            path.display()
        )
    })?;
    conn.set_read_timeout(Some(CLI_WAIT))?;
    conn.write_all(format!("{request}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(Read::take(conn, 64 * 1024))
        .read_line(&mut answer)
        .context("reading the answer")?;
    let answer = answer.trim().to_string();
    match answer.strip_prefix("ok ") {
        Some(ok) => Ok(ok.to_string()),
        None => bail!("{}", answer.strip_prefix("error: ").unwrap_or(&answer)),
    }
}
