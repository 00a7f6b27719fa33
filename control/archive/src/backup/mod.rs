//! Incremental, content-addressed, verified backups of a server's world (issue 14): the
//! copy that exists while a server is active, so losing a node never loses a world.
//!
//! # Layout (below a prefix, `backups/<server>` for the lifecycle engine)
//!
//! * `blobs/<aa>/<sha256>`: one chunk of file data, zstd-compressed; named by the sha256 of
//!   its *uncompressed* bytes, so a chunk is stored once however many snapshots (or files)
//!   hold it, and every read can prove it got the right bytes.
//! * `snapshots/<id>.json`: a snapshot's [`Snapshot`] manifest (paths, modes, sizes, each
//!   file's chunk list, when, which server, what it stored new), behind a header line with
//!   its own sha256. It is written **last**, after every blob it names was written and read
//!   back, so a snapshot exists only if all its blobs do. Ids are UTC times
//!   (`20260102T030405Z`), so they sort by age.
//!
//! # Chunking: fixed 1 MiB chunks
//!
//! Whole-file addressing is the simplest, but a Minecraft world is mostly region files
//! (`region/`, `entities/`, `poi/`: up to tens of MiB each) that the server rewrites *in
//! place*, a 4 KiB sector at a time; a player walking around changes a few sectors of a
//! few files, and whole-file addressing would store each touched file again in full.
//! Chunking bounds that cost to the chunks touched. restic uses content-defined chunking
//! (a rolling hash picks boundaries, ~1 MiB on average) because it must survive bytes
//! *inserted* into a file, which shift every later fixed boundary. Nothing in a world
//! does that: region files keep their layout and only grow at the end, logs are appended
//! (only the last chunk changes), and the small files (`level.dat`, player data, JSON) are
//! rewritten whole and fit in one chunk anyway. So fixed-size chunks cost the same as
//! content-defined ones here, need no rolling hash (hashing is the only per-byte work) and
//! no dependency. 1 MiB keeps the object count low (a 1 GiB world is ~1000 objects, which
//! matters on S3, where each is a request); the price is that a change scattered over many
//! sectors touches many chunks (see `examples/backup_bench.rs` for both cases). Blobs are
//! per server (`backups/<server>/blobs`), so one server's retention never has to read
//! another's snapshots; identical files of two servers are stored twice.
//!
//! A file whose size, mtime, ctime and inode match the previous snapshot's entry is not
//! read again (as restic does; ctime cannot be set back by a program, so a rewrite that
//! keeps the mtime is still seen): an unchanged world costs a directory walk. Files that
//! changed within 2 s before the previous snapshot started are read anyway (timestamps
//! have a clock tick's granularity; git calls these "racily clean").
//!
//! # Guarantees
//!
//! * Written: every *new* blob is read back, decompressed and hashed before the manifest
//!   is written; the manifest is read back and compared too.
//! * Restored: every blob is hashed before the world is put in place (extracted beside the
//!   target and swapped in with one rename); a snapshot that fails is never restored, and
//!   [`restore_with_fallback`] then tries the next older one and says which it skipped.
//! * Pruned: [`prune`] deletes the manifests the [`Retention`] policy does not keep, then
//!   deletes blobs no kept manifest references, but only if every kept manifest was read
//!   and verified: a manifest that cannot be read stops the sweep (mark and sweep).
//!
//! Only one writer per prefix at a time (the server's owner; the engine serialises its
//! backups, restores and prunes per server): a prune racing a backup could delete a blob
//! the backup just decided to reuse.

mod blob;
mod id;
mod list;
mod manifest;
mod prune;
mod restore;
mod retention;
mod write;

pub use id::id_unix_ms;
pub use list::{list_ids, load, summaries, verify_snapshot, Summary};
pub use manifest::{FileStat, SnapEntry, Snapshot, Stats, SNAPSHOT_VERSION};
pub use prune::{prune, PruneReport};
pub use restore::{
    restore_snapshot, restore_snapshot_tar, restore_tar_with_fallback, restore_with_fallback,
    Restored,
};
pub use retention::Retention;
pub use write::{backup_dir, backup_tar, BackupOptions};

/// Chunk size of new snapshots.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Where the lifecycle engine keeps `server`'s backups in archive storage.
pub fn prefix_for(server: &str) -> String {
    format!("backups/{server}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn snapshots_dir(prefix: &str) -> String {
    format!("{}/snapshots", prefix.trim_end_matches('/'))
}

fn snapshot_key(prefix: &str, id: &str) -> String {
    format!("{}/{id}.json", snapshots_dir(prefix))
}

fn blobs_dir(prefix: &str) -> String {
    format!("{}/blobs", prefix.trim_end_matches('/'))
}
