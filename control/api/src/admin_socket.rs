//! The local admin socket: the root of trust for API tokens. `warden token create --config
//! F` asks the running appliance over it for a token, so the first admin token needs no
//! token: being the appliance's user on its node is the credential. A Unix socket with
//! mode 0600 in the store directory. Everything else goes through the HTTP API.
//!
//! `warden store backup FILE --config F` asks it, the same way, for an online copy of the
//! embedded store (the running process holds the file's lock).
//!
//! Protocol: one request line (`token create ROLE NAME…`, `store backup /ABS/PATH`), one
//! response line (`ok …` or `error …`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

use warden_store::StateStore;

use crate::tokens::{self, Role};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 512;
/// A client must send its request promptly.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The appliance answers at once (a store backup within seconds); one that does not is an
/// error.
const CLI_WAIT: Duration = Duration::from_secs(120);

/// The socket's place: next to the store's data.
pub fn socket_path(store_dir: &Path) -> PathBuf {
    store_dir.join("admin.sock")
}

pub async fn serve(path: PathBuf, store: Arc<dyn StateStore>) {
    let _ = std::fs::remove_file(&path);
    // The data directory of a first boot may not exist yet.
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            warn!(socket = %path.display(), error = %e, "admin socket unavailable; `warden token create --config` will not reach this process");
            return;
        }
    };
    if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
        warn!(socket = %path.display(), error = %e, "could not restrict the admin socket");
    }
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                let store = store.clone();
                tokio::spawn(async move { handle(conn, store.as_ref()).await });
            }
            Err(e) => {
                warn!(error = %e, "admin socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(conn: UnixStream, store: &dyn StateStore) {
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    let mut limited = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
    let answer = match tokio::time::timeout(REQUEST_TIMEOUT, limited.read_line(&mut line)).await {
        Ok(Ok(_)) => run(line.trim(), store).await,
        Ok(Err(e)) => format!("error reading the request: {e}"),
        Err(_) => "error: no request within 5 s".to_string(),
    };
    let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
}

async fn run(request: &str, store: &dyn StateStore) -> String {
    if let Some(path) = request.strip_prefix("store backup ") {
        let path = std::path::Path::new(path.trim());
        if !path.is_absolute() {
            return format!("error: `{}` is not an absolute path", path.display());
        }
        return match store.backup_to(path).await {
            Ok(b) => {
                info!(file = %b.file.display(), rows = b.rows, bytes = b.bytes, "admin socket: store backed up");
                format!(
                    "ok {}: {} tables, {} rows, {} bytes (opened and checked)",
                    b.file.display(),
                    b.tables,
                    b.rows,
                    b.bytes
                )
            }
            Err(e) => format!("error: {e}"),
        };
    }
    let words: Vec<&str> = request.split_whitespace().collect();
    match words.as_slice() {
        ["token", "create", role, name @ ..] if !name.is_empty() => {
            let Some(role) = Role::parse(role) else {
                return format!("error: role `{role}`: use viewer, operator or admin");
            };
            let name = name.join(" ");
            match tokens::create(store, role, &name).await {
                Ok((info, secret)) => {
                    info!(token = %info.id, role = role.as_str(), %name, "admin socket: token created");
                    format!("ok {secret}")
                }
                Err(e) => format!("error: {e}"),
            }
        }
        _ => format!(
            "error: unknown request `{request}` (try: token create ROLE NAME, or store backup FILE)"
        ),
    }
}

/// Why the CLI's request over the admin socket failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("connecting to {path} (is `warden run` running with this config?): {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("reading the answer: {0}")]
    Read(std::io::Error),
    /// The appliance refused: its message.
    #[error("{0}")]
    Refused(String),
}

/// The CLI side: sends `request` and returns the answer, or fails with it.
pub fn request(path: &Path, request: &str) -> Result<String, AdminError> {
    let mut conn =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| AdminError::Connect {
            path: path.display().to_string(),
            source,
        })?;
    conn.set_read_timeout(Some(CLI_WAIT))?;
    conn.write_all(format!("{request}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(Read::take(conn, 64 * 1024))
        .read_line(&mut answer)
        .map_err(AdminError::Read)?;
    let answer = answer.trim().to_string();
    match answer.strip_prefix("ok ") {
        Some(ok) => Ok(ok.to_string()),
        None => Err(AdminError::Refused(
            answer
                .strip_prefix("error: ")
                .unwrap_or(&answer)
                .to_string(),
        )),
    }
}
