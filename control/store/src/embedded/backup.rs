//! `warden store backup FILE`: an online, consistent copy of the embedded store. One read
//! transaction (a consistent view; writers carry on meanwhile) is copied table by table
//! into a new redb file beside FILE; the copy is then opened again and every table's row
//! count compared with the source before it is renamed to FILE. A table this file does
//! not know is an error, not a silent omission: a new table must be added to [`TABLES`].

use std::path::Path;

use redb::{Database, Key, ReadTransaction, TableDefinition, TableHandle, Value, WriteTransaction};

use super::error::Failure;
use super::tables::*;
use super::EmbeddedStore;
use crate::error::StoreError;
use crate::store::StoreBackup;

/// Every table of the file, by name (what the copy must contain).
const TABLES: [&str; 16] = [
    "servers",
    "transitions",
    "transitions_by_server",
    "sessions",
    "open_sessions",
    "session_starts",
    "session_ends",
    "server_session_starts",
    "server_session_ends",
    "player_ms",
    "feed",
    "wake_epochs",
    "meta",
    "docs",
    "logs",
    "nodes",
];

impl EmbeddedStore {
    /// Copies the store as one read transaction sees it to `dest` (replaced if it exists),
    /// verified by opening the copy and comparing every table's row count.
    pub(super) async fn copy_to(&self, dest: &Path) -> Result<StoreBackup, StoreError> {
        let inner = self.inner.clone();
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || copy_store(&inner.db, &dest).map_err(|e| e.at(&dest)))
            .await
            .map_err(|e| StoreError::Backend(format!("store backup task failed: {e}")))?
    }
}

fn copy_store(db: &Database, dest: &Path) -> Result<StoreBackup, Failure> {
    let io = |what: &str, e: std::io::Error| {
        Failure::Store(StoreError::Backend(format!(
            "{what} {}: {e}",
            dest.display()
        )))
    };
    let name = dest.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Failure::Store(StoreError::Invalid(format!(
            "{}: not a file name",
            dest.display()
        )))
    })?;
    let partial = dest.with_file_name(format!(".{name}.partial"));
    if partial.exists() {
        std::fs::remove_file(&partial).map_err(|e| io("removing the leftover", e))?;
    }
    let src = db.begin_read()?;
    let mut known: Vec<String> = src.list_tables()?.map(|t| t.name().to_string()).collect();
    known.sort();
    if let Some(t) = known.iter().find(|t| !TABLES.contains(&t.as_str())) {
        return Err(Failure::Store(StoreError::Backend(format!(
            "table `{t}` is not known to the store backup (add it to embedded/backup.rs)"
        ))));
    }
    let copy = Database::create(&partial)?;
    let rows = {
        let w = copy.begin_write()?;
        let rows = tables(&src, Some(&w), None)?;
        w.commit()?;
        rows
    };
    drop(copy);
    // the copy, opened afresh, must hold what the source transaction holds
    let check = Database::open(&partial)?;
    let back = check.begin_read()?;
    let copied = tables(&src, None, Some(&back))?;
    if copied != rows {
        return Err(Failure::Store(StoreError::Backend(format!(
            "the copy holds {copied} rows, the store {rows}"
        ))));
    }
    drop(back);
    drop(check);
    std::fs::rename(&partial, dest).map_err(|e| io("renaming the copy to", e))?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("syncing the directory of", e))?;
    }
    let bytes = std::fs::metadata(dest).map_err(|e| io("stat", e))?.len();
    Ok(StoreBackup {
        file: dest.to_path_buf(),
        tables: TABLES.len(),
        rows,
        bytes,
    })
}

/// For every table: copies it into `w`, or (with `check`) compares its row count with
/// the copy's. Returns the rows of the source.
fn tables(
    src: &ReadTransaction,
    w: Option<&WriteTransaction>,
    check: Option<&ReadTransaction>,
) -> Result<u64, Failure> {
    let mut rows = 0;
    rows += table(src, w, check, SERVERS)?;
    rows += table(src, w, check, TRANSITIONS)?;
    rows += table(src, w, check, TRANSITIONS_BY_SERVER)?;
    rows += table(src, w, check, SESSIONS)?;
    rows += table(src, w, check, OPEN_SESSIONS)?;
    rows += table(src, w, check, SESSION_STARTS)?;
    rows += table(src, w, check, SESSION_ENDS)?;
    rows += table(src, w, check, SERVER_SESSION_STARTS)?;
    rows += table(src, w, check, SERVER_SESSION_ENDS)?;
    rows += table(src, w, check, PLAYER_MS)?;
    rows += table(src, w, check, FEED)?;
    rows += table(src, w, check, WAKE_EPOCHS)?;
    rows += table(src, w, check, META)?;
    rows += table(src, w, check, DOCS)?;
    rows += table(src, w, check, LOGS)?;
    rows += table(src, w, check, NODES)?;
    Ok(rows)
}

fn table<K: Key + 'static, V: Value + 'static>(
    src: &ReadTransaction,
    w: Option<&WriteTransaction>,
    check: Option<&ReadTransaction>,
    def: TableDefinition<K, V>,
) -> Result<u64, Failure> {
    use redb::ReadableTableMetadata;
    let from = src.open_table(def)?;
    let n = from.len()?;
    if let Some(w) = w {
        let mut to = w.open_table(def)?;
        for row in redb::ReadableTable::iter(&from)? {
            let (k, v) = row?;
            to.insert(k.value(), v.value())?;
        }
    }
    if let Some(c) = check {
        let got = c.open_table(def)?.len()?;
        if got != n {
            return Err(Failure::Store(StoreError::Backend(format!(
                "table `{}`: the copy holds {got} rows, the store {n}",
                def.name()
            ))));
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ServerRecord, ServerState};
    use crate::store::{Documents, Servers};

    #[tokio::test]
    async fn a_copy_opens_as_a_store_with_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("live")).await.unwrap();
        store
            .put_new(ServerRecord::new("lobby", ServerState::Sleeping, "t"))
            .await
            .unwrap();
        store.put_doc("tokens", "a", "{}", true).await.unwrap();
        let dest = dir.path().join("copy").join(FILE_NAME);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let report = crate::StateStore::backup_to(&store, &dest).await.unwrap();
        assert!(report.rows >= 3, "{report:?}");
        // the live store is still in use; the copy opens on its own
        let copy = EmbeddedStore::open(dir.path().join("copy")).await.unwrap();
        let rec = copy.get("lobby").await.unwrap().unwrap();
        assert_eq!(rec.state, ServerState::Sleeping);
        assert_eq!(
            copy.get_doc("tokens", "a").await.unwrap().as_deref(),
            Some("{}")
        );
        // every table the store creates is one the backup knows
        let txn = store.inner.db.begin_read().unwrap();
        let mut names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        names.sort();
        let mut want: Vec<String> = TABLES.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(names, want);
    }
}
