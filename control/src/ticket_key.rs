//! The anteroom's ticket key: loaded from a file, or created once and kept, so tickets
//! survive restarts and binary upgrades (a lost key only turns a transfer into a fresh join).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};

/// Shorter keys make forgeable tickets.
const MIN_KEY_BYTES: usize = 32;

pub fn load_or_create(path: &Path) -> anyhow::Result<Arc<[u8]>> {
    match std::fs::read(path) {
        Ok(key) if key.len() >= MIN_KEY_BYTES => return Ok(key.into()),
        Ok(key) => bail!(
            "anteroom key {} has {} bytes; it needs at least {MIN_KEY_BYTES} (delete it to have one generated)",
            path.display(),
            key.len()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading anteroom key {}", path.display())),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut key = [0u8; MIN_KEY_BYTES];
    getrandom::fill(&mut key).context("generating the anteroom key")?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match file {
        Ok(mut f) => {
            f.write_all(&key)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing anteroom key {}", path.display()))?;
            Ok(key.to_vec().into())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
        Err(e) => Err(e).with_context(|| format!("creating anteroom key {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_and_short_keys_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/anteroom.key");
        let a = load_or_create(&path).unwrap();
        assert_eq!(a.len(), MIN_KEY_BYTES);
        assert_eq!(load_or_create(&path).unwrap(), a);
        std::fs::write(&path, b"short").unwrap();
        assert!(load_or_create(&path)
            .unwrap_err()
            .to_string()
            .contains("at least"));
    }
}
