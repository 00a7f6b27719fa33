//! The default store for a single appliance: a redb file in the data
//! directory. redb gives ACID write transactions with fsync on commit, so a
//! kill -9 leaves either the whole state change (record + transition +
//! version) or none of it. redb is blocking, so every call runs on the
//! blocking pool rather than stalling the proxy's async workers.

mod error;

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
use error::Failure;

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

    fn append_transition(&self, txn: &WriteTransaction, t: &Transition) -> Result<(), Failure> {
        let seq = bump(txn, META_TRANSITION_SEQ)?;
        let json = encode(t)?;
        txn.open_table(TRANSITIONS)?.insert(seq, json.as_str())?;
        txn.open_table(TRANSITIONS_BY_SERVER)?
            .insert((t.server.as_str(), seq), ())?;
        self.append_feed(txn, &HistoryEvent::Transition(t.clone()))
    }

    /// Appends `event` to the feed, dropping the entry [`LOG_CAPACITY`] positions back.
    fn append_feed(&self, txn: &WriteTransaction, event: &HistoryEvent) -> Result<(), Failure> {
        let seq = bump(txn, META_FEED_SEQ)?;
        let payload = feed_payload(event, now_unix_ms())?;
        let mut feed = txn.open_table(FEED)?;
        feed.insert(seq, payload.as_str())?;
        let capacity = LOG_CAPACITY as u64;
        if seq > capacity {
            feed.remove(seq - capacity)?;
        }
        Ok(())
    }

    /// Adds `s` to the start index, and to the end index if it has ended.
    fn index_session(&self, txn: &WriteTransaction, s: &SessionRecord) -> Result<(), Failure> {
        let (id, server) = (s.id.as_str(), s.server.as_str());
        txn.open_table(SESSION_STARTS)?
            .insert((s.start_unix_ms, id), ())?;
        txn.open_table(SERVER_SESSION_STARTS)?
            .insert((server, s.start_unix_ms, id), ())?;
        if let Some(end) = s.end_unix_ms {
            txn.open_table(SESSION_ENDS)?.insert((end, id), ())?;
            txn.open_table(SERVER_SESSION_ENDS)?
                .insert((server, end, id), ())?;
        }
        Ok(())
    }

    /// A store written before the time index existed: index its sessions once.
    fn index_old_sessions(&self) -> Result<(), Failure> {
        let txn = self.db.begin_write()?;
        let done = txn.open_table(META)?.get(META_SESSION_INDEX)?.is_some();
        if done {
            return Ok(());
        }
        let mut all = Vec::new();
        {
            let table = txn.open_table(SESSIONS)?;
            for item in table.iter()? {
                let (k, v) = item?;
                all.push(decode::<SessionRecord>(
                    &format!("session {}", k.value()),
                    v.value(),
                )?);
            }
        }
        for s in &all {
            self.index_session(&txn, s)?;
        }
        txn.open_table(META)?.insert(META_SESSION_INDEX, 1)?;
        Ok(txn.commit()?)
    }

    /// The newest `limit` ids of a time index at or after `since`, newest first.
    fn newest(
        &self,
        txn: &ReadTransaction,
        ends: bool,
        server: Option<&str>,
        since: u64,
        limit: usize,
    ) -> Result<Vec<String>, Failure> {
        let mut out = Vec::new();
        if let Some(server) = server {
            let def = if ends {
                SERVER_SESSION_ENDS
            } else {
                SERVER_SESSION_STARTS
            };
            let table = txn.open_table(def)?;
            let range = table.range((server, since, "")..(server, u64::MAX, ""))?;
            for item in range.rev().take(limit) {
                let (k, _) = item?;
                out.push(k.value().2.to_string());
            }
        } else {
            let def = if ends { SESSION_ENDS } else { SESSION_STARTS };
            let table = txn.open_table(def)?;
            let range = table.range((since, "")..)?;
            for item in range.rev().take(limit) {
                let (k, _) = item?;
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
    ) -> Result<u64, Failure> {
        let mut ends = txn.open_table(SESSION_ENDS)?;
        let mut victims = Vec::new();
        for item in ends.range(..(before, ""))?.take(batch) {
            let (k, _) = item?;
            let (end, id) = k.value();
            victims.push((end, id.to_string()));
        }
        let mut sessions = txn.open_table(SESSIONS)?;
        let mut starts = txn.open_table(SESSION_STARTS)?;
        let mut server_starts = txn.open_table(SERVER_SESSION_STARTS)?;
        let mut server_ends = txn.open_table(SERVER_SESSION_ENDS)?;
        let mut player_ms = txn.open_table(PLAYER_MS)?;
        for (end, id) in &victims {
            ends.remove((*end, id.as_str()))?;
            let removed = sessions.remove(id.as_str())?;
            let Some(json) = removed.map(|g| g.value().to_string()) else {
                continue;
            };
            let s: SessionRecord = decode(&format!("session {id}"), &json)?;
            let server = s.server.as_str();
            starts.remove((s.start_unix_ms, id.as_str()))?;
            server_starts.remove((server, s.start_unix_ms, id.as_str()))?;
            server_ends.remove((server, *end, id.as_str()))?;
            for (hour, ms) in player_ms_by_hour(s.start_unix_ms, *end) {
                let old = player_ms.get((server, hour))?.map_or(0, |g| g.value());
                player_ms.insert((server, hour), old.saturating_add(ms))?;
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
    ) -> Result<u64, Failure> {
        let mut feed = txn.open_table(FEED)?;
        let mut old = Vec::new();
        for item in feed.iter()?.take(batch) {
            let (k, v) = item?;
            if payload_time(v.value())? >= before {
                break;
            }
            old.push(k.value());
        }
        for seq in &old {
            feed.remove(*seq)?;
        }
        Ok(old.len() as u64)
    }
}

fn bump(txn: &WriteTransaction, key: &str) -> Result<u64, Failure> {
    let mut meta = txn.open_table(META)?;
    let next = meta.get(key)?.map_or(0, |g| g.value()).saturating_add(1);
    meta.insert(key, next)?;
    Ok(next)
}

fn get_server(
    table: &impl ReadableTable<&'static str, &'static str>,
    id: &str,
) -> Result<Option<ServerRecord>, Failure> {
    match table.get(id)? {
        Some(g) => Ok(Some(decode(&format!("server {id}"), g.value())?)),
        None => Ok(None),
    }
}

fn get_session(
    table: &impl ReadableTable<&'static str, &'static str>,
    id: &str,
) -> Result<Option<SessionRecord>, Failure> {
    match table.get(id)? {
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
}

#[async_trait]
impl Servers for EmbeddedStore {
    async fn get(&self, id: &str) -> Result<Option<ServerRecord>, StoreError> {
        let id = id.to_string();
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(SERVERS)?;
            get_server(&table, &id)
        })
        .await
    }

    async fn list(&self) -> Result<Vec<ServerRecord>, StoreError> {
        self.blocking(|inner| {
            let txn = inner.read()?;
            let table = txn.open_table(SERVERS)?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let (k, v) = item?;
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
                let mut table = txn.open_table(SERVERS)?;
                if table.get(record.id.as_str())?.is_some() {
                    return Err(StoreError::AlreadyExists {
                        kind: "server",
                        id: record.id.clone(),
                    }
                    .into());
                }
                let json = encode(&record)?;
                table.insert(record.id.as_str(), json.as_str())?;
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
            inner.write(|_, txn| {
                let mut table = txn.open_table(SERVERS)?;
                let existed = table.remove(id.as_str())?.is_some();
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
                let mut table = txn.open_table(SERVERS)?;
                let current =
                    get_server(&table, &id)?.ok_or_else(|| StoreError::server_not_found(&id))?;
                if current.epoch != expected_epoch {
                    return Err(StoreError::Conflict {
                        id: id.clone(),
                        expected: expected_epoch,
                        actual: current.epoch,
                        state: current.state,
                    }
                    .into());
                }
                let (next, t) = change.apply_to(&current, now_unix_ms());
                let json = encode(&next)?;
                table.insert(id.as_str(), json.as_str())?;
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
            let all = txn.open_table(TRANSITIONS)?;
            let mut out = Vec::new();
            let take = |seq: u64, out: &mut Vec<Transition>| -> Result<bool, Failure> {
                let Some(g) = all.get(seq)? else {
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
                    let index = txn.open_table(TRANSITIONS_BY_SERVER)?;
                    let range = index.range((server, 0u64)..=(server, u64::MAX))?;
                    for item in range.rev() {
                        let (k, _) = item?;
                        if !take(k.value().1, &mut out)? {
                            break;
                        }
                    }
                } else {
                    let seqs = all.iter()?;
                    for item in seqs.rev() {
                        let (k, _) = item?;
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
                let mut table = txn.open_table(SESSIONS)?;
                if table.get(session.id.as_str())?.is_some() {
                    return Err(StoreError::AlreadyExists {
                        kind: "session",
                        id: session.id.clone(),
                    }
                    .into());
                }
                let json = encode(&session)?;
                table.insert(session.id.as_str(), json.as_str())?;
                txn.open_table(OPEN_SESSIONS)?
                    .insert(session.id.as_str(), ())?;
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
                    let table = txn.open_table(SESSIONS)?;
                    get_session(&table, &id)
                }
            })
            .await?
            .ok_or_else(|| StoreError::session_not_found(&id))?;
        if existing.end_unix_ms.is_some() {
            return Ok(existing);
        }
        self.blocking(move |inner| {
            inner.write(|inner, txn| {
                let mut table = txn.open_table(SESSIONS)?;
                let mut session =
                    get_session(&table, &id)?.ok_or_else(|| StoreError::session_not_found(&id))?;
                if session.end_unix_ms.is_some() {
                    return Ok(session);
                }
                session.end_unix_ms = Some(end_unix_ms.max(session.start_unix_ms));
                let json = encode(&session)?;
                table.insert(id.as_str(), json.as_str())?;
                txn.open_table(OPEN_SESSIONS)?.remove(id.as_str())?;
                drop(table);
                inner.index_session(txn, &session)?;
                inner.append_feed(txn, &HistoryEvent::Left(session.clone()))?;
                let mut servers = txn.open_table(SERVERS)?;
                if let Some(mut record) = get_server(&servers, &session.server)? {
                    let end = session.end_unix_ms;
                    if end > record.last_session_end_unix_ms {
                        record.last_session_end_unix_ms = end;
                        let json = encode(&record)?;
                        servers.insert(record.id.as_str(), json.as_str())?;
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
            let table = txn.open_table(SESSIONS)?;
            let mut out: Vec<SessionRecord> = Vec::new();
            if open_only {
                let open = txn.open_table(OPEN_SESSIONS)?;
                for item in open.iter()? {
                    let (k, _) = item?;
                    if let Some(s) = get_session(&table, k.value())? {
                        out.push(s);
                    }
                }
            } else {
                for item in table.iter()? {
                    let (k, v) = item?;
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
            let table = txn.open_table(SESSIONS)?;
            let mut out = Vec::new();
            let ends = txn.open_table(SERVER_SESSION_ENDS)?;
            for item in
                ends.range((server.as_str(), from_ms, "")..(server.as_str(), u64::MAX, ""))?
            {
                let (k, _) = item?;
                if let Some(s) = get_session(&table, k.value().2)? {
                    out.push(s);
                }
            }
            let open = txn.open_table(OPEN_SESSIONS)?;
            for item in open.iter()? {
                let (k, _) = item?;
                if let Some(s) = get_session(&table, k.value())? {
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
            let meta = txn.open_table(META)?;
            let head = meta.get(META_FEED_SEQ)?;
            Ok(head.map_or(0, |g| g.value()))
        })
        .await
    }

    async fn history_after(&self, cursor: u64, limit: usize) -> Result<HistoryPage, StoreError> {
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let meta = txn.open_table(META)?;
            let head = meta.get(META_FEED_SEQ)?.map_or(0, |g| g.value());
            let mut entries = Vec::new();
            if let Some(first) = cursor.checked_add(1) {
                let feed = txn.open_table(FEED)?;
                for item in feed.range(first..)?.take(limit) {
                    let (k, v) = item?;
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
            let table = txn.open_table(SESSIONS)?;
            let mut out = Vec::new();
            for ends in [false, true] {
                for id in inner.newest(&txn, ends, server.as_deref(), since_ms, limit)? {
                    let Some(s) = get_session(&table, &id)? else {
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
            let table = txn.open_table(PLAYER_MS)?;
            let first = from_ms - from_ms % AGGREGATE_MS;
            let mut out = Vec::new();
            for item in table.range((server.as_str(), first)..(server.as_str(), to_ms))? {
                let (k, v) = item?;
                out.push((k.value().1, v.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn prune_history(&self, before_ms: u64, batch: usize) -> Result<Pruned, StoreError> {
        self.blocking(move |inner| {
            // No version bump: nobody re-reads because old history went away.
            let txn = inner.db.begin_write()?;
            let pruned = Pruned {
                sessions: inner.prune_sessions(&txn, before_ms, batch)?,
                feed_entries: inner.prune_feed(&txn, before_ms, batch)?,
            };
            txn.commit()?;
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
                let txn = inner.db.begin_write()?;
                let next = {
                    let mut t = txn.open_table(WAKE_EPOCHS)?;
                    let next = t
                        .get(server.as_str())?
                        .map_or(0, |g| g.value())
                        .saturating_add(1);
                    t.insert(server.as_str(), next)?;
                    next
                };
                txn.commit()?;
                Ok::<_, Failure>(next)
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
            inner.write(|_, txn| {
                let mut table = txn.open_table(DOCS)?;
                if create && table.get((kind, id.as_str()))?.is_some() {
                    return Err(StoreError::AlreadyExists { kind, id }.into());
                }
                table.insert((kind, id.as_str()), json.as_str())?;
                Ok(())
            })
        })
        .await
    }

    async fn get_doc(&self, kind: &'static str, id: &str) -> Result<Option<String>, StoreError> {
        let id = id.to_string();
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(DOCS)?;
            let found = table.get((kind, id.as_str()))?;
            Ok(found.map(|g| g.value().to_string()))
        })
        .await
    }

    async fn list_docs(&self, kind: &'static str) -> Result<Vec<(String, String)>, StoreError> {
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(DOCS)?;
            let mut out = Vec::new();
            for item in table.range((kind, "")..)? {
                let (k, v) = item?;
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
            inner.write(|_, txn| {
                let mut table = txn.open_table(DOCS)?;
                let existed = table.remove((kind, id.as_str()))?.is_some();
                Ok(existed)
            })
        })
        .await
    }

    async fn append_log(&self, kind: &'static str, json: &str) -> Result<(), StoreError> {
        let json = json.to_string();
        self.blocking(move |inner| {
            let txn = inner.db.begin_write()?;
            {
                let seq = bump(&txn, &format!("log:{kind}"))?;
                let mut table = txn.open_table(LOGS)?;
                table.insert((kind, seq), json.as_str())?;
                let capacity = crate::store::LOG_CAPACITY as u64;
                if seq > capacity {
                    table.remove((kind, seq - capacity))?;
                }
            }
            Ok(txn.commit()?)
        })
        .await
    }

    async fn read_log(&self, kind: &'static str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(LOGS)?;
            let mut out = Vec::new();
            for item in table.range((kind, 0)..=(kind, u64::MAX))?.rev().take(limit) {
                let (_, v) = item?;
                out.push(v.value().to_string());
            }
            out.reverse();
            Ok(out)
        })
        .await
    }
}
