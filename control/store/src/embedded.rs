//! The default store for a single appliance: a redb file in the data
//! directory. redb gives ACID write transactions with fsync on commit, so a
//! kill -9 leaves either the whole state change (record + transition +
//! version) or none of it. redb is blocking, so every call runs on the
//! blocking pool rather than stalling the proxy's async workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::watch;

use crate::error::{check_id, decode, encode, StoreError};
use crate::lock::LeaseTable;
use crate::model::{
    creation, new_token, now_unix_ms, Change, ServerRecord, SessionRecord, Transition,
    TransitionFilter, WakeLease,
};
use crate::store::StateStore;

const SERVERS: TableDefinition<&str, &str> = TableDefinition::new("servers");
/// Global sequence number → transition; the sequence is the append order.
const TRANSITIONS: TableDefinition<u64, &str> = TableDefinition::new("transitions");
/// (server, sequence) index so one server's history is read without a scan.
const TRANSITIONS_BY_SERVER: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("transitions_by_server");
const SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("sessions");
const OPEN_SESSIONS: TableDefinition<&str, ()> = TableDefinition::new("open_sessions");
const WAKE_EPOCHS: TableDefinition<&str, u64> = TableDefinition::new("wake_epochs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (kind, id) → JSON document.
const DOCS: TableDefinition<(&str, &str), &str> = TableDefinition::new("docs");
/// (kind, sequence) → JSON log entry.
const LOGS: TableDefinition<(&str, u64), &str> = TableDefinition::new("logs");

const META_VERSION: &str = "version";
const META_TRANSITION_SEQ: &str = "transition_seq";

/// The file inside the data directory.
pub const FILE_NAME: &str = "state.redb";

pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    version_tx: watch::Sender<u64>,
    leases: LeaseTable,
}

fn db_err(path: &Path, e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
            "{} is already open (another warden process or store instance uses this data directory)",
            path.display()
        )),
        e => StoreError::Backend(format!("{}: {e}", path.display())),
    }
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
        let db = Database::create(&path).map_err(|e| db_err(&path, e))?;
        // Create every table up front so readers never meet a missing table.
        let txn = db.begin_write().map_err(|e| db_err(&path, e))?;
        let version = {
            txn.open_table(SERVERS).map_err(|e| db_err(&path, e))?;
            txn.open_table(TRANSITIONS).map_err(|e| db_err(&path, e))?;
            txn.open_table(TRANSITIONS_BY_SERVER)
                .map_err(|e| db_err(&path, e))?;
            txn.open_table(SESSIONS).map_err(|e| db_err(&path, e))?;
            txn.open_table(OPEN_SESSIONS)
                .map_err(|e| db_err(&path, e))?;
            txn.open_table(WAKE_EPOCHS).map_err(|e| db_err(&path, e))?;
            txn.open_table(DOCS).map_err(|e| db_err(&path, e))?;
            txn.open_table(LOGS).map_err(|e| db_err(&path, e))?;
            let meta = txn.open_table(META).map_err(|e| db_err(&path, e))?;
            let v = meta
                .get(META_VERSION)
                .map_err(|e| db_err(&path, e))?
                .map_or(0, |g| g.value());
            v
        };
        txn.commit().map_err(|e| db_err(&path, e))?;
        let (version_tx, _) = watch::channel(version);
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                path,
                version_tx,
                leases: LeaseTable::default(),
            }),
        })
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Backend(format!("embedded store task failed: {e}")))?
    }
}

impl Inner {
    fn err(&self, e: impl Into<redb::Error>) -> StoreError {
        db_err(&self.path, e)
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(|e| self.err(e))
    }

    /// One write transaction that also bumps the version; `f` failing aborts
    /// everything it wrote.
    fn write<T>(
        &self,
        f: impl FnOnce(&Inner, &WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let out = f(self, &txn)?;
        let version = bump(self, &txn, META_VERSION)?;
        txn.commit().map_err(|e| self.err(e))?;
        self.version_tx.send_replace(version);
        Ok(out)
    }

    fn append_transition(&self, txn: &WriteTransaction, t: &Transition) -> Result<(), StoreError> {
        let seq = bump(self, txn, META_TRANSITION_SEQ)?;
        let json = encode(t)?;
        txn.open_table(TRANSITIONS)
            .map_err(|e| self.err(e))?
            .insert(seq, json.as_str())
            .map_err(|e| self.err(e))?;
        txn.open_table(TRANSITIONS_BY_SERVER)
            .map_err(|e| self.err(e))?
            .insert((t.server.as_str(), seq), ())
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

fn bump(inner: &Inner, txn: &WriteTransaction, key: &str) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META).map_err(|e| inner.err(e))?;
    let next = meta
        .get(key)
        .map_err(|e| inner.err(e))?
        .map_or(0, |g| g.value())
        .saturating_add(1);
    meta.insert(key, next).map_err(|e| inner.err(e))?;
    Ok(next)
}

fn get_server(
    inner: &Inner,
    table: &impl ReadableTable<&'static str, &'static str>,
    id: &str,
) -> Result<Option<ServerRecord>, StoreError> {
    match table.get(id).map_err(|e| inner.err(e))? {
        Some(g) => Ok(Some(decode(&format!("server {id}"), g.value())?)),
        None => Ok(None),
    }
}

fn get_session(
    inner: &Inner,
    table: &impl ReadableTable<&'static str, &'static str>,
    id: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    match table.get(id).map_err(|e| inner.err(e))? {
        Some(g) => Ok(Some(decode(&format!("session {id}"), g.value())?)),
        None => Ok(None),
    }
}

#[async_trait]
impl StateStore for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.blocking(|inner| {
            let txn = inner.read()?;
            txn.open_table(META).map_err(|e| inner.err(e))?;
            Ok(())
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<ServerRecord>, StoreError> {
        let id = id.to_string();
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(SERVERS).map_err(|e| inner.err(e))?;
            get_server(inner, &table, &id)
        })
        .await
    }

    async fn list(&self) -> Result<Vec<ServerRecord>, StoreError> {
        self.blocking(|inner| {
            let txn = inner.read()?;
            let table = txn.open_table(SERVERS).map_err(|e| inner.err(e))?;
            let mut out = Vec::new();
            for item in table.iter().map_err(|e| inner.err(e))? {
                let (k, v) = item.map_err(|e| inner.err(e))?;
                out.push(decode(&format!("server {}", k.value()), v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_new(&self, record: ServerRecord) -> Result<ServerRecord, StoreError> {
        check_id("server", &record.id)?;
        self.blocking(move |inner| {
            inner.write(|inner, txn| {
                let mut table = txn.open_table(SERVERS).map_err(|e| inner.err(e))?;
                if table
                    .get(record.id.as_str())
                    .map_err(|e| inner.err(e))?
                    .is_some()
                {
                    return Err(StoreError::AlreadyExists {
                        kind: "server",
                        id: record.id.clone(),
                    });
                }
                let json = encode(&record)?;
                table
                    .insert(record.id.as_str(), json.as_str())
                    .map_err(|e| inner.err(e))?;
                drop(table);
                inner.append_transition(txn, &creation(&record, now_unix_ms()))?;
                Ok(record)
            })
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.blocking(move |inner| {
            inner.write(|inner, txn| {
                let mut table = txn.open_table(SERVERS).map_err(|e| inner.err(e))?;
                let existed = table
                    .remove(id.as_str())
                    .map_err(|e| inner.err(e))?
                    .is_some();
                Ok(existed)
            })
        })
        .await
    }

    async fn apply(
        &self,
        id: &str,
        expected_epoch: u64,
        change: Change,
    ) -> Result<ServerRecord, StoreError> {
        let id = id.to_string();
        self.blocking(move |inner| {
            inner.write(|inner, txn| {
                let mut table = txn.open_table(SERVERS).map_err(|e| inner.err(e))?;
                let current = get_server(inner, &table, &id)?
                    .ok_or_else(|| StoreError::server_not_found(&id))?;
                if current.epoch != expected_epoch {
                    return Err(StoreError::Conflict {
                        id: id.clone(),
                        expected: expected_epoch,
                        actual: current.epoch,
                        state: current.state,
                    });
                }
                let (next, t) = change.apply_to(&current, now_unix_ms());
                let json = encode(&next)?;
                table
                    .insert(id.as_str(), json.as_str())
                    .map_err(|e| inner.err(e))?;
                drop(table);
                inner.append_transition(txn, &t)?;
                Ok(next)
            })
        })
        .await
    }

    async fn transitions(&self, filter: &TransitionFilter) -> Result<Vec<Transition>, StoreError> {
        let filter = filter.clone();
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let all = txn.open_table(TRANSITIONS).map_err(|e| inner.err(e))?;
            let mut out = Vec::new();
            let take = |seq: u64, out: &mut Vec<Transition>| -> Result<bool, StoreError> {
                let Some(g) = all.get(seq).map_err(|e| inner.err(e))? else {
                    return Ok(true);
                };
                let t: Transition = decode(&format!("transition {seq}"), g.value())?;
                // Newest first: once older than `since`, the rest are too.
                if filter.since_ms.is_some_and(|s| t.at_unix_ms < s) {
                    return Ok(false);
                }
                if filter.matches(&t) {
                    out.push(t);
                }
                Ok(out.len() < filter.limit)
            };
            if filter.limit > 0 {
                if let Some(server) = filter.server.as_deref() {
                    let index = txn
                        .open_table(TRANSITIONS_BY_SERVER)
                        .map_err(|e| inner.err(e))?;
                    let range = index
                        .range((server, 0u64)..=(server, u64::MAX))
                        .map_err(|e| inner.err(e))?;
                    for item in range.rev() {
                        let (k, _) = item.map_err(|e| inner.err(e))?;
                        if !take(k.value().1, &mut out)? {
                            break;
                        }
                    }
                } else {
                    let seqs = all.iter().map_err(|e| inner.err(e))?;
                    for item in seqs.rev() {
                        let (k, _) = item.map_err(|e| inner.err(e))?;
                        if !take(k.value(), &mut out)? {
                            break;
                        }
                    }
                }
            }
            out.reverse();
            Ok(out)
        })
        .await
    }

    async fn session_started(&self, session: SessionRecord) -> Result<(), StoreError> {
        check_id("session", &session.id)?;
        check_id("server", &session.server)?;
        check_id("appliance", &session.appliance)?;
        if session.end_unix_ms.is_some() {
            return Err(StoreError::Invalid(format!(
                "session {} starts already ended",
                session.id
            )));
        }
        self.blocking(move |inner| {
            inner.write(|inner, txn| {
                let mut table = txn.open_table(SESSIONS).map_err(|e| inner.err(e))?;
                if table
                    .get(session.id.as_str())
                    .map_err(|e| inner.err(e))?
                    .is_some()
                {
                    return Err(StoreError::AlreadyExists {
                        kind: "session",
                        id: session.id.clone(),
                    });
                }
                let json = encode(&session)?;
                table
                    .insert(session.id.as_str(), json.as_str())
                    .map_err(|e| inner.err(e))?;
                txn.open_table(OPEN_SESSIONS)
                    .map_err(|e| inner.err(e))?
                    .insert(session.id.as_str(), ())
                    .map_err(|e| inner.err(e))?;
                Ok(())
            })
        })
        .await
    }

    async fn session_ended(&self, id: &str, end_unix_ms: u64) -> Result<SessionRecord, StoreError> {
        let id = id.to_string();
        // Reading first keeps a repeated end from bumping the version.
        let existing = self
            .blocking({
                let id = id.clone();
                move |inner| {
                    let txn = inner.read()?;
                    let table = txn.open_table(SESSIONS).map_err(|e| inner.err(e))?;
                    get_session(inner, &table, &id)
                }
            })
            .await?
            .ok_or_else(|| StoreError::session_not_found(&id))?;
        if existing.end_unix_ms.is_some() {
            return Ok(existing);
        }
        self.blocking(move |inner| {
            inner.write(|inner, txn| {
                let mut table = txn.open_table(SESSIONS).map_err(|e| inner.err(e))?;
                let mut session = get_session(inner, &table, &id)?
                    .ok_or_else(|| StoreError::session_not_found(&id))?;
                if session.end_unix_ms.is_some() {
                    return Ok(session);
                }
                session.end_unix_ms = Some(end_unix_ms.max(session.start_unix_ms));
                let json = encode(&session)?;
                table
                    .insert(id.as_str(), json.as_str())
                    .map_err(|e| inner.err(e))?;
                txn.open_table(OPEN_SESSIONS)
                    .map_err(|e| inner.err(e))?
                    .remove(id.as_str())
                    .map_err(|e| inner.err(e))?;
                let mut servers = txn.open_table(SERVERS).map_err(|e| inner.err(e))?;
                if let Some(mut record) = get_server(inner, &servers, &session.server)? {
                    let end = session.end_unix_ms;
                    if end > record.last_session_end_unix_ms {
                        record.last_session_end_unix_ms = end;
                        let json = encode(&record)?;
                        servers
                            .insert(record.id.as_str(), json.as_str())
                            .map_err(|e| inner.err(e))?;
                    }
                }
                Ok(session)
            })
        })
        .await
    }

    async fn sessions(
        &self,
        server: Option<&str>,
        open_only: bool,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let server = server.map(str::to_string);
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(SESSIONS).map_err(|e| inner.err(e))?;
            let mut out: Vec<SessionRecord> = Vec::new();
            if open_only {
                let open = txn.open_table(OPEN_SESSIONS).map_err(|e| inner.err(e))?;
                for item in open.iter().map_err(|e| inner.err(e))? {
                    let (k, _) = item.map_err(|e| inner.err(e))?;
                    if let Some(s) = get_session(inner, &table, k.value())? {
                        out.push(s);
                    }
                }
            } else {
                for item in table.iter().map_err(|e| inner.err(e))? {
                    let (k, v) = item.map_err(|e| inner.err(e))?;
                    out.push(decode(&format!("session {}", k.value()), v.value())?);
                }
            }
            out.retain(|s| server.as_deref().is_none_or(|srv| s.server == srv));
            out.sort_by(|a, b| (a.start_unix_ms, &a.id).cmp(&(b.start_unix_ms, &b.id)));
            Ok(out)
        })
        .await
    }

    async fn live_count(&self, server: &str) -> Result<u64, StoreError> {
        // One appliance: its open sessions are exactly the live ones.
        let open = self.sessions(Some(server), true).await?;
        Ok(open.len() as u64)
    }

    async fn heartbeat(&self, _appliance: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn acquire_wake(
        &self,
        server: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<WakeLease>, StoreError> {
        check_id("server", server)?;
        let server = server.to_string();
        let token = new_token(owner);
        self.blocking(move |inner| {
            let epoch = inner.leases.try_acquire(&server, &token, ttl, || {
                // Persisted (without a version bump: a lease is not state
                // anyone re-reads) so epochs keep rising across restarts.
                let txn = inner.db.begin_write().map_err(|e| inner.err(e))?;
                let next = {
                    let mut t = txn.open_table(WAKE_EPOCHS).map_err(|e| inner.err(e))?;
                    let next = t
                        .get(server.as_str())
                        .map_err(|e| inner.err(e))?
                        .map_or(0, |g| g.value())
                        .saturating_add(1);
                    t.insert(server.as_str(), next).map_err(|e| inner.err(e))?;
                    next
                };
                txn.commit().map_err(|e| inner.err(e))?;
                Ok::<_, StoreError>(next)
            })?;
            Ok(epoch.map(|fencing_epoch| WakeLease {
                server,
                token,
                fencing_epoch,
            }))
        })
        .await
    }

    async fn renew_wake(&self, lease: &WakeLease, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.inner.leases.renew(&lease.server, &lease.token, ttl))
    }

    async fn release_wake(&self, lease: &WakeLease) -> Result<bool, StoreError> {
        Ok(self.inner.leases.release(&lease.server, &lease.token))
    }

    async fn put_doc(
        &self,
        kind: &'static str,
        id: &str,
        json: &str,
        create: bool,
    ) -> Result<(), StoreError> {
        check_id(kind, id)?;
        let (id, json) = (id.to_string(), json.to_string());
        self.blocking(move |inner| {
            inner.write(|inner, txn| {
                let mut table = txn.open_table(DOCS).map_err(|e| inner.err(e))?;
                if create
                    && table
                        .get((kind, id.as_str()))
                        .map_err(|e| inner.err(e))?
                        .is_some()
                {
                    return Err(StoreError::AlreadyExists { kind, id });
                }
                table
                    .insert((kind, id.as_str()), json.as_str())
                    .map_err(|e| inner.err(e))?;
                Ok(())
            })
        })
        .await
    }

    async fn get_doc(&self, kind: &'static str, id: &str) -> Result<Option<String>, StoreError> {
        let id = id.to_string();
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(DOCS).map_err(|e| inner.err(e))?;
            let found = table.get((kind, id.as_str())).map_err(|e| inner.err(e))?;
            Ok(found.map(|g| g.value().to_string()))
        })
        .await
    }

    async fn list_docs(&self, kind: &'static str) -> Result<Vec<(String, String)>, StoreError> {
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(DOCS).map_err(|e| inner.err(e))?;
            let mut out = Vec::new();
            for item in table.range((kind, "")..).map_err(|e| inner.err(e))? {
                let (k, v) = item.map_err(|e| inner.err(e))?;
                let (k_kind, id) = k.value();
                if k_kind != kind {
                    break;
                }
                out.push((id.to_string(), v.value().to_string()));
            }
            Ok(out)
        })
        .await
    }

    async fn delete_doc(&self, kind: &'static str, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.blocking(move |inner| {
            inner.write(|inner, txn| {
                let mut table = txn.open_table(DOCS).map_err(|e| inner.err(e))?;
                let existed = table
                    .remove((kind, id.as_str()))
                    .map_err(|e| inner.err(e))?
                    .is_some();
                Ok(existed)
            })
        })
        .await
    }

    async fn append_log(&self, kind: &'static str, json: &str) -> Result<(), StoreError> {
        let json = json.to_string();
        self.blocking(move |inner| {
            let txn = inner.db.begin_write().map_err(|e| inner.err(e))?;
            {
                let seq = bump(inner, &txn, &format!("log:{kind}"))?;
                let mut table = txn.open_table(LOGS).map_err(|e| inner.err(e))?;
                table
                    .insert((kind, seq), json.as_str())
                    .map_err(|e| inner.err(e))?;
                let capacity = crate::store::LOG_CAPACITY as u64;
                if seq > capacity {
                    table
                        .remove((kind, seq - capacity))
                        .map_err(|e| inner.err(e))?;
                }
            }
            txn.commit().map_err(|e| inner.err(e))
        })
        .await
    }

    async fn read_log(&self, kind: &'static str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(LOGS).map_err(|e| inner.err(e))?;
            let mut out = Vec::new();
            for item in table
                .range((kind, 0)..=(kind, u64::MAX))
                .map_err(|e| inner.err(e))?
                .rev()
                .take(limit)
            {
                let (_, v) = item.map_err(|e| inner.err(e))?;
                out.push(v.value().to_string());
            }
            out.reverse();
            Ok(out)
        })
        .await
    }

    async fn version(&self) -> Result<u64, StoreError> {
        Ok(*self.inner.version_tx.borrow())
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.inner.version_tx.subscribe()
    }
}
