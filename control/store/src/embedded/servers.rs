//! Server records and their transitions in redb: a record per server, transitions by
//! global sequence with a (server, sequence) index.

use async_trait::async_trait;
use redb::{ReadableTable, WriteTransaction};

use super::error::Failure;
use super::tables::{META_TRANSITION_SEQ, SERVERS, TRANSITIONS, TRANSITIONS_BY_SERVER};
use super::{bump, EmbeddedStore, Inner};
use crate::error::{check_id, decode, encode, StoreError};
use crate::history::HistoryEvent;
use crate::model::{creation, now_unix_ms, Change, ServerRecord, Transition, TransitionFilter};
use crate::store::Servers;

impl Inner {
    pub(super) fn append_transition(
        &self,
        txn: &WriteTransaction,
        t: &Transition,
    ) -> Result<(), Failure> {
        let seq = bump(txn, META_TRANSITION_SEQ)?;
        let json = encode(t)?;
        txn.open_table(TRANSITIONS)?.insert(seq, json.as_str())?;
        txn.open_table(TRANSITIONS_BY_SERVER)?
            .insert((t.server.as_str(), seq), ())?;
        self.append_feed(txn, &HistoryEvent::Transition(t.clone()))
    }
}

/// The record `id` of the servers table, decoded.
pub(super) fn get_server(
    table: &impl ReadableTable<&'static str, &'static str>,
    id: &str,
) -> Result<Option<ServerRecord>, Failure> {
    match table.get(id)? {
        Some(g) => Ok(Some(decode(&format!("server {id}"), g.value())?)),
        None => Ok(None),
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
                change.check_owner(&current)?;
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
