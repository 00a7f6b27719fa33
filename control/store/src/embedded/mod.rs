//! The default store for a single appliance: a redb file in the data
//! directory. redb gives ACID write transactions with fsync on commit, so a
//! kill -9 leaves either the whole state change (record + transition +
//! version) or none of it. redb is blocking, so every call runs on the
//! blocking pool rather than stalling the proxy's async workers.
//!
//! Here: opening the file, the blocking pool, transactions and what is about the store
//! as a whole. Apart: `tables` (the file's layout), `error` (redb errors to
//! `StoreError`, once), `lock` (the in-memory lease table), `backup` (an online copy of
//! the file), and one file per sub-trait of the store: `servers`, `sessions`, `history`,
//! `wake`, `docs`, `nodes`.

mod backup;
mod docs;
mod error;
mod history;
mod lock;
mod nodes;
mod servers;
mod sessions;
mod tables;
mod wake;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadTransaction, ReadableTable, WriteTransaction};
use tokio::sync::watch;

use crate::error::StoreError;
use crate::store::{StateStore, StoreBackup};
use error::Failure;
use lock::LeaseTable;
pub use tables::FILE_NAME;
use tables::{
    DOCS, FEED, LOGS, META, META_VERSION, NODES, OPEN_SESSIONS, PLAYER_MS, SERVERS,
    SERVER_SESSION_ENDS, SERVER_SESSION_STARTS, SESSIONS, SESSION_ENDS, SESSION_STARTS,
    TRANSITIONS, TRANSITIONS_BY_SERVER, WAKE_EPOCHS,
};

pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    version_tx: watch::Sender<u64>,
    leases: LeaseTable,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir`.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = data_dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&dir))
            .await
            .map_err(|e| StoreError::Backend(format!("opening embedded store: {e}")))?
    }

    fn open_blocking(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("creating data directory {}: {e}", dir.display()))
        })?;
        let path = dir.join(FILE_NAME);
        Self::open_file(path.clone()).map_err(|e| e.at(&path))
    }

    fn open_file(path: PathBuf) -> Result<Self, Failure> {
        let db = Database::create(&path)?;
        // Create every table up front so readers never meet a missing table.
        let txn = db.begin_write()?;
        let version = {
            txn.open_table(SERVERS)?;
            txn.open_table(TRANSITIONS)?;
            txn.open_table(TRANSITIONS_BY_SERVER)?;
            txn.open_table(SESSIONS)?;
            txn.open_table(OPEN_SESSIONS)?;
            txn.open_table(WAKE_EPOCHS)?;
            txn.open_table(DOCS)?;
            txn.open_table(LOGS)?;
            txn.open_table(SESSION_STARTS)?;
            txn.open_table(SESSION_ENDS)?;
            txn.open_table(SERVER_SESSION_STARTS)?;
            txn.open_table(SERVER_SESSION_ENDS)?;
            txn.open_table(PLAYER_MS)?;
            txn.open_table(FEED)?;
            txn.open_table(NODES)?;
            let meta = txn.open_table(META)?;
            let v = meta.get(META_VERSION)?.map_or(0, |g| g.value());
            v
        };
        txn.commit()?;
        let (version_tx, _) = watch::channel(version);
        let inner = Inner {
            db,
            path,
            version_tx,
            leases: LeaseTable::default(),
        };
        inner.index_old_sessions()?;
        Ok(EmbeddedStore {
            inner: Arc::new(inner),
        })
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner).map_err(|e| e.at(&inner.path)))
            .await
            .map_err(|e| StoreError::Backend(format!("embedded store task failed: {e}")))?
    }
}

impl Inner {
    fn read(&self) -> Result<ReadTransaction, Failure> {
        Ok(self.db.begin_read()?)
    }

    /// One write transaction that also bumps the version; `f` failing aborts
    /// everything it wrote.
    fn write<T>(
        &self,
        f: impl FnOnce(&Inner, &WriteTransaction) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let txn = self.db.begin_write()?;
        let out = f(self, &txn)?;
        let version = bump(&txn, META_VERSION)?;
        txn.commit()?;
        self.version_tx.send_replace(version);
        Ok(out)
    }
}

fn bump(txn: &WriteTransaction, key: &str) -> Result<u64, Failure> {
    let mut meta = txn.open_table(META)?;
    let next = meta.get(key)?.map_or(0, |g| g.value()).saturating_add(1);
    meta.insert(key, next)?;
    Ok(next)
}

#[async_trait]
impl StateStore for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.blocking(|inner| {
            let txn = inner.read()?;
            txn.open_table(META)?;
            Ok(())
        })
        .await
    }

    async fn version(&self) -> Result<u64, StoreError> {
        Ok(*self.inner.version_tx.borrow())
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.inner.version_tx.subscribe()
    }

    async fn backup_to(&self, dest: &Path) -> Result<StoreBackup, StoreError> {
        self.copy_to(dest).await
    }
}
