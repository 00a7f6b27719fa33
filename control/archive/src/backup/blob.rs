//! Blobs: one chunk of file data, zstd-compressed, named by the sha256 of its
//! uncompressed bytes. Writing one means reading it back and checking that name; reading
//! one means the same check, so a bit flipped anywhere in storage is always caught.

use std::collections::HashSet;

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::blobs_dir;
use super::manifest::{is_sha, MAX_CHUNK};
use crate::error::{ArchiveError, IoContext, Result};
use crate::hashing::sha256_hex;
use crate::store::ArchiveStore;

pub(crate) fn key(prefix: &str, sha: &str) -> String {
    format!("{}/{}/{sha}", blobs_dir(prefix), &sha[..2.min(sha.len())])
}

/// Compressed size a chunk of `raw` bytes can never exceed (zstd's bound, plus slack).
fn max_stored(raw: u64) -> u64 {
    raw + raw / 128 + 4096
}

/// The names of every blob stored below `prefix`.
pub(crate) async fn existing<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
) -> Result<HashSet<String>> {
    Ok(store
        .list(&blobs_dir(prefix))
        .await?
        .into_iter()
        .filter_map(|k| k.rsplit('/').next().map(str::to_string))
        .filter(|n| is_sha(n))
        .collect())
}

/// Compresses one chunk (on the calling, blocking, thread).
pub(crate) fn encode(raw: &[u8], level: i32) -> Result<Vec<u8>> {
    zstd::bulk::compress(raw, level).map_err(|e| ArchiveError::from_io("compressing a chunk", e))
}

/// Decompresses a stored blob and checks it is `len` bytes hashing to `sha`.
fn decode(key: &str, stored: &[u8], sha: &str, len: u64) -> Result<Vec<u8>> {
    let cap = usize::try_from(len.min(MAX_CHUNK)).unwrap_or(usize::MAX);
    let raw = zstd::bulk::decompress(stored, cap).map_err(|e| ArchiveError::Verification {
        path: key.to_string(),
        expected: "a zstd-compressed chunk".into(),
        got: format!("undecodable data ({e})"),
    })?;
    if raw.len() as u64 != len {
        return Err(ArchiveError::Verification {
            path: key.to_string(),
            expected: format!("{len} bytes"),
            got: format!("{} bytes", raw.len()),
        });
    }
    let got = sha256_hex(&raw);
    if got != sha {
        return Err(ArchiveError::Verification {
            path: key.to_string(),
            expected: format!("sha256 {sha}"),
            got: format!("sha256 {got}"),
        });
    }
    Ok(raw)
}

/// Reads blob `sha` (a chunk of `len` bytes) and returns its verified, uncompressed bytes.
pub(crate) async fn fetch<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    sha: &str,
    len: u64,
) -> Result<Bytes> {
    let k = key(prefix, sha);
    let limit = max_stored(len);
    let mut stored = Vec::new();
    store
        .get(&k)
        .await?
        .take(limit + 1)
        .read_to_end(&mut stored)
        .await
        .ctx(|| format!("reading {k}"))?;
    if stored.len() as u64 > limit {
        return Err(ArchiveError::Verification {
            path: k,
            expected: format!("at most {limit} bytes for a {len}-byte chunk"),
            got: "more".into(),
        });
    }
    let sha = sha.to_string();
    tokio::task::spawn_blocking(move || decode(&k, &stored, &sha, len).map(Bytes::from))
        .await
        .map_err(|e| ArchiveError::Task(e.to_string()))?
}

/// Stores a new blob and reads it back: Ok (its stored size) only once the store returns
/// bytes that decompress to the chunk. A failed check deletes the bad object, so no later
/// backup reuses it.
pub(crate) async fn put_verified<S: ArchiveStore + ?Sized>(
    store: &S,
    prefix: &str,
    sha: &str,
    raw_len: u64,
    stored: Vec<u8>,
) -> Result<u64> {
    let k = key(prefix, sha);
    let info = store
        .put(&k, Box::new(std::io::Cursor::new(stored)))
        .await?;
    if let Err(e) = fetch(store, prefix, sha, raw_len).await {
        let _ = store.delete(&k).await;
        return Err(e);
    }
    Ok(info.bytes)
}
