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
use crate::history::{
    feed_payload, newest_in_order, parse_payload, payload_time, player_ms_by_hour, HistoryEvent,
    HistoryPage, Pruned, AGGREGATE_MS,
};
use crate::lock::LeaseTable;
use crate::model::{
    creation, new_token, now_unix_ms, Change, ServerRecord, SessionRecord, Transition,
    TransitionFilter, WakeLease,
};
use crate::store::{Documents, History, Servers, Sessions, StateStore, WakeLock, LOG_CAPACITY};

const SERVERS: TableDefinition<&str, &str> = TableDefinition::new("servers");
/// Global sequence number → transition; the sequence is the append order.
const TRANSITIONS: TableDefinition<u64, &str> = TableDefinition::new("transitions");
/// (server, sequence) index so one server's history is read without a scan.
const TRANSITIONS_BY_SERVER: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("transitions_by_server");
const SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("sessions");
const OPEN_SESSIONS: TableDefinition<&str, ()> = TableDefinition::new("open_sessions");
/// Sessions by (start, id) and by (end, id): the event list reads the newest, the
/// retention the oldest, neither scans the history.
const SESSION_STARTS: TableDefinition<(u64, &str), ()> = TableDefinition::new("session_starts");
const SESSION_ENDS: TableDefinition<(u64, &str), ()> = TableDefinition::new("session_ends");
/// The same, per server: (server, time, id).
const SERVER_SESSION_STARTS: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("server_session_starts");
const SERVER_SESSION_ENDS: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("server_session_ends");
/// (server, hour start) → player ms of pruned sessions.
const PLAYER_MS: TableDefinition<(&str, u64), u64> = TableDefinition::new("player_ms");
/// Feed position → `time|event JSON` (see `history::feed_payload`).
const FEED: TableDefinition<u64, &str> = TableDefinition::new("feed");
const WAKE_EPOCHS: TableDefinition<&str, u64> = TableDefinition::new("wake_epochs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// (kind, id) → JSON document.
const DOCS: TableDefinition<(&str, &str), &str> = TableDefinition::new("docs");
/// (kind, sequence) → JSON log entry.
const LOGS: TableDefinition<(&str, u64), &str> = TableDefinition::new("logs");

const META_VERSION: &str = "version";
const META_TRANSITION_SEQ: &str = "transition_seq";
const META_FEED_SEQ: &str = "feed_seq";
/// Set once the sessions of a store written before the time index are indexed.
const META_SESSION_INDEX: &str = "session_index";

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
            txn.open_table(SESSION_STARTS)
                .map_err(|e| db_err(&path, e))?;
            txn.open_table(SESSION_ENDS).map_err(|e| db_err(&path, e))?;
            txn.open_table(SERVER_SESSION_STARTS)
                .map_err(|e| db_err(&path, e))?;
            txn.open_table(SERVER_SESSION_ENDS)
                .map_err(|e| db_err(&path, e))?;
            txn.open_table(PLAYER_MS).map_err(|e| db_err(&path, e))?;
            txn.open_table(FEED).map_err(|e| db_err(&path, e))?;
            let meta = txn.open_table(META).map_err(|e| db_err(&path, e))?;
            let v = meta
                .get(META_VERSION)
                .map_err(|e| db_err(&path, e))?
                .map_or(0, |g| g.value());
            v
        };
        txn.commit().map_err(|e| db_err(&path, e))?;
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
        self.append_feed(txn, &HistoryEvent::Transition(t.clone()))
    }

    /// Appends `event` to the feed, dropping the entry [`LOG_CAPACITY`] positions back.
    fn append_feed(&self, txn: &WriteTransaction, event: &HistoryEvent) -> Result<(), StoreError> {
        let seq = bump(self, txn, META_FEED_SEQ)?;
        let payload = feed_payload(event, now_unix_ms())?;
        let mut feed = txn.open_table(FEED).map_err(|e| self.err(e))?;
        feed.insert(seq, payload.as_str())
            .map_err(|e| self.err(e))?;
        let capacity = LOG_CAPACITY as u64;
        if seq > capacity {
            feed.remove(seq - capacity).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Adds `s` to the start index, and to the end index if it has ended.
    fn index_session(&self, txn: &WriteTransaction, s: &SessionRecord) -> Result<(), StoreError> {
        let (id, server) = (s.id.as_str(), s.server.as_str());
        txn.open_table(SESSION_STARTS)
            .map_err(|e| self.err(e))?
            .insert((s.start_unix_ms, id), ())
            .map_err(|e| self.err(e))?;
        txn.open_table(SERVER_SESSION_STARTS)
            .map_err(|e| self.err(e))?
            .insert((server, s.start_unix_ms, id), ())
            .map_err(|e| self.err(e))?;
        if let Some(end) = s.end_unix_ms {
            txn.open_table(SESSION_ENDS)
                .map_err(|e| self.err(e))?
                .insert((end, id), ())
                .map_err(|e| self.err(e))?;
            txn.open_table(SERVER_SESSION_ENDS)
                .map_err(|e| self.err(e))?
                .insert((server, end, id), ())
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// A store written before the time index existed: index its sessions once.
    fn index_old_sessions(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let done = txn
            .open_table(META)
            .map_err(|e| self.err(e))?
            .get(META_SESSION_INDEX)
            .map_err(|e| self.err(e))?
            .is_some();
        if done {
            return Ok(());
        }
        let mut all = Vec::new();
        {
            let table = txn.open_table(SESSIONS).map_err(|e| self.err(e))?;
            for item in table.iter().map_err(|e| self.err(e))? {
                let (k, v) = item.map_err(|e| self.err(e))?;
                all.push(decode::<SessionRecord>(
                    &format!("session {}", k.value()),
                    v.value(),
                )?);
            }
        }
        for s in &all {
            self.index_session(&txn, s)?;
        }
        txn.open_table(META)
            .map_err(|e| self.err(e))?
            .insert(META_SESSION_INDEX, 1)
            .map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))
    }

    /// The newest `limit` ids of a time index at or after `since`, newest first.
    fn newest(
        &self,
        txn: &ReadTransaction,
        ends: bool,
        server: Option<&str>,
        since: u64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        if let Some(server) = server {
            let def = if ends {
                SERVER_SESSION_ENDS
            } else {
                SERVER_SESSION_STARTS
            };
            let table = txn.open_table(def).map_err(|e| self.err(e))?;
            let range = table
                .range((server, since, "")..(server, u64::MAX, ""))
                .map_err(|e| self.err(e))?;
            for item in range.rev().take(limit) {
                let (k, _) = item.map_err(|e| self.err(e))?;
                out.push(k.value().2.to_string());
            }
        } else {
            let def = if ends { SESSION_ENDS } else { SESSION_STARTS };
            let table = txn.open_table(def).map_err(|e| self.err(e))?;
            let range = table.range((since, "")..).map_err(|e| self.err(e))?;
            for item in range.rev().take(limit) {
                let (k, _) = item.map_err(|e| self.err(e))?;
                out.push(k.value().1.to_string());
            }
        }
        Ok(out)
    }

    /// Removes up to `batch` sessions that ended before `before`, folding their player
    /// time into [`PLAYER_MS`]. Returns how many went.
    fn prune_sessions(
        &self,
        txn: &WriteTransaction,
        before: u64,
        batch: usize,
    ) -> Result<u64, StoreError> {
        let mut ends = txn.open_table(SESSION_ENDS).map_err(|e| self.err(e))?;
        let mut victims = Vec::new();
        for item in ends
            .range(..(before, ""))
            .map_err(|e| self.err(e))?
            .take(batch)
        {
            let (k, _) = item.map_err(|e| self.err(e))?;
            let (end, id) = k.value();
            victims.push((end, id.to_string()));
        }
        let mut sessions = txn.open_table(SESSIONS).map_err(|e| self.err(e))?;
        let mut starts = txn.open_table(SESSION_STARTS).map_err(|e| self.err(e))?;
        let mut server_starts = txn
            .open_table(SERVER_SESSION_STARTS)
            .map_err(|e| self.err(e))?;
        let mut server_ends = txn
            .open_table(SERVER_SESSION_ENDS)
            .map_err(|e| self.err(e))?;
        let mut player_ms = txn.open_table(PLAYER_MS).map_err(|e| self.err(e))?;
        for (end, id) in &victims {
            ends.remove((*end, id.as_str())).map_err(|e| self.err(e))?;
            let removed = sessions.remove(id.as_str()).map_err(|e| self.err(e))?;
            let Some(json) = removed.map(|g| g.value().to_string()) else {
                continue;
            };
            let s: SessionRecord = decode(&format!("session {id}"), &json)?;
            let server = s.server.as_str();
            starts
                .remove((s.start_unix_ms, id.as_str()))
                .map_err(|e| self.err(e))?;
            server_starts
                .remove((server, s.start_unix_ms, id.as_str()))
                .map_err(|e| self.err(e))?;
            server_ends
                .remove((server, *end, id.as_str()))
                .map_err(|e| self.err(e))?;
            for (hour, ms) in player_ms_by_hour(s.start_unix_ms, *end) {
                let old = player_ms
                    .get((server, hour))
                    .map_err(|e| self.err(e))?
                    .map_or(0, |g| g.value());
                player_ms
                    .insert((server, hour), old.saturating_add(ms))
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(victims.len() as u64)
    }

    /// Removes up to `batch` of the oldest feed entries, those recorded before `before`.
    fn prune_feed(
        &self,
        txn: &WriteTransaction,
        before: u64,
        batch: usize,
    ) -> Result<u64, StoreError> {
        let mut feed = txn.open_table(FEED).map_err(|e| self.err(e))?;
        let mut old = Vec::new();
        for item in feed.iter().map_err(|e| self.err(e))?.take(batch) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if payload_time(v.value())? >= before {
                break;
            }
            old.push(k.value());
        }
        for seq in &old {
            feed.remove(*seq).map_err(|e| self.err(e))?;
        }
        Ok(old.len() as u64)
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

    async fn version(&self) -> Result<u64, StoreError> {
        Ok(*self.inner.version_tx.borrow())
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.inner.version_tx.subscribe()
    }
}

#[async_trait]
impl Servers for EmbeddedStore {
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
}

#[async_trait]
impl Sessions for EmbeddedStore {
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
                drop(table);
                inner.index_session(txn, &session)?;
                inner.append_feed(txn, &HistoryEvent::Joined(session.clone()))
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
                drop(table);
                inner.index_session(txn, &session)?;
                inner.append_feed(txn, &HistoryEvent::Left(session.clone()))?;
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

    async fn sessions_overlapping(
        &self,
        server: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let server = server.to_string();
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(SESSIONS).map_err(|e| inner.err(e))?;
            let mut out = Vec::new();
            let ends = txn
                .open_table(SERVER_SESSION_ENDS)
                .map_err(|e| inner.err(e))?;
            for item in ends
                .range((server.as_str(), from_ms, "")..(server.as_str(), u64::MAX, ""))
                .map_err(|e| inner.err(e))?
            {
                let (k, _) = item.map_err(|e| inner.err(e))?;
                if let Some(s) = get_session(inner, &table, k.value().2)? {
                    out.push(s);
                }
            }
            let open = txn.open_table(OPEN_SESSIONS).map_err(|e| inner.err(e))?;
            for item in open.iter().map_err(|e| inner.err(e))? {
                let (k, _) = item.map_err(|e| inner.err(e))?;
                if let Some(s) = get_session(inner, &table, k.value())? {
                    if s.server == server && s.end_unix_ms.is_none() {
                        out.push(s);
                    }
                }
            }
            out.retain(|s| s.start_unix_ms < to_ms);
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
}

#[async_trait]
impl History for EmbeddedStore {
    async fn history_head(&self) -> Result<u64, StoreError> {
        self.blocking(|inner| {
            let txn = inner.read()?;
            let meta = txn.open_table(META).map_err(|e| inner.err(e))?;
            let head = meta.get(META_FEED_SEQ).map_err(|e| inner.err(e))?;
            Ok(head.map_or(0, |g| g.value()))
        })
        .await
    }

    async fn history_after(&self, cursor: u64, limit: usize) -> Result<HistoryPage, StoreError> {
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let meta = txn.open_table(META).map_err(|e| inner.err(e))?;
            let head = meta
                .get(META_FEED_SEQ)
                .map_err(|e| inner.err(e))?
                .map_or(0, |g| g.value());
            let mut entries = Vec::new();
            if let Some(first) = cursor.checked_add(1) {
                let feed = txn.open_table(FEED).map_err(|e| inner.err(e))?;
                for item in feed.range(first..).map_err(|e| inner.err(e))?.take(limit) {
                    let (k, v) = item.map_err(|e| inner.err(e))?;
                    entries.push((k.value(), parse_payload(v.value())?.1));
                }
            }
            Ok(HistoryPage { entries, head })
        })
        .await
    }

    async fn session_events(
        &self,
        server: Option<&str>,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>, StoreError> {
        let server = server.map(str::to_string);
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(SESSIONS).map_err(|e| inner.err(e))?;
            let mut out = Vec::new();
            for ends in [false, true] {
                for id in inner.newest(&txn, ends, server.as_deref(), since_ms, limit)? {
                    let Some(s) = get_session(inner, &table, &id)? else {
                        continue;
                    };
                    out.push(if ends {
                        HistoryEvent::Left(s)
                    } else {
                        HistoryEvent::Joined(s)
                    });
                }
            }
            Ok(newest_in_order(out, limit))
        })
        .await
    }

    async fn player_time_aggregates(
        &self,
        server: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let server = server.to_string();
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(PLAYER_MS).map_err(|e| inner.err(e))?;
            let first = from_ms - from_ms % AGGREGATE_MS;
            let mut out = Vec::new();
            for item in table
                .range((server.as_str(), first)..(server.as_str(), to_ms))
                .map_err(|e| inner.err(e))?
            {
                let (k, v) = item.map_err(|e| inner.err(e))?;
                out.push((k.value().1, v.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn prune_history(&self, before_ms: u64, batch: usize) -> Result<Pruned, StoreError> {
        self.blocking(move |inner| {
            // No version bump: nobody re-reads because old history went away.
            let txn = inner.db.begin_write().map_err(|e| inner.err(e))?;
            let pruned = Pruned {
                sessions: inner.prune_sessions(&txn, before_ms, batch)?,
                feed_entries: inner.prune_feed(&txn, before_ms, batch)?,
            };
            txn.commit().map_err(|e| inner.err(e))?;
            Ok(pruned)
        })
        .await
    }
}

#[async_trait]
impl WakeLock for EmbeddedStore {
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
}

#[async_trait]
impl Documents for EmbeddedStore {
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
}
