//! Sessions in redb: a record per session, the open ones in their own table, and the
//! time indexes (by start and by end, fleet-wide and per server) the history reads.

use async_trait::async_trait;
use redb::{ReadableTable, WriteTransaction};

use super::error::Failure;
use super::servers::get_server;
use super::tables::{
    OPEN_SESSIONS, SERVERS, SERVER_SESSION_ENDS, SERVER_SESSION_STARTS, SESSIONS, SESSION_ENDS,
    SESSION_STARTS,
};
use super::{EmbeddedStore, Inner};
use crate::error::{check_id, decode, encode, StoreError};
use crate::history::HistoryEvent;
use crate::model::SessionRecord;
use crate::store::Sessions;

impl Inner {
    /// Adds `s` to the start index, and to the end index if it has ended.
    pub(super) fn index_session(
        &self,
        txn: &WriteTransaction,
        s: &SessionRecord,
    ) -> Result<(), Failure> {
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
}

/// The record `id` of the sessions table, decoded.
pub(super) fn get_session(
    table: &impl ReadableTable<&'static str, &'static str>,
    id: &str,
) -> Result<Option<SessionRecord>, Failure> {
    match table.get(id)? {
        Some(g) => Ok(Some(decode(&format!("session {id}"), g.value())?)),
        None => Ok(None),
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
