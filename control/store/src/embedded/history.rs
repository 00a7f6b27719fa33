//! The history feed, the session time index and the retention in redb.

use async_trait::async_trait;
use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::error::Failure;
use super::sessions::get_session;
use super::tables::{
    FEED, META, META_FEED_SEQ, META_SESSION_INDEX, PLAYER_MS, SERVER_SESSION_ENDS,
    SERVER_SESSION_STARTS, SESSIONS, SESSION_ENDS, SESSION_STARTS,
};
use super::{bump, EmbeddedStore, Inner};
use crate::error::{decode, StoreError};
use crate::history::{
    feed_payload, newest_in_order, parse_payload, payload_time, player_ms_by_hour, FleetEvent,
    HistoryEvent, HistoryPage, Pruned, AGGREGATE_MS,
};
use crate::model::{now_unix_ms, SessionRecord};
use crate::store::{History, LOG_CAPACITY};

impl Inner {
    /// Appends `event` to the feed, dropping the entry [`LOG_CAPACITY`] positions back.
    pub(super) fn append_feed(
        &self,
        txn: &WriteTransaction,
        event: &HistoryEvent,
    ) -> Result<(), Failure> {
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

    /// A store written before the time index existed: index its sessions once.
    pub(super) fn index_old_sessions(&self) -> Result<(), Failure> {
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
    pub(super) fn newest(
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
    pub(super) fn prune_sessions(
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
    pub(super) fn prune_feed(
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

#[async_trait]
impl History for EmbeddedStore {
    async fn record_fleet_event(&self, event: FleetEvent) -> Result<(), StoreError> {
        self.blocking(move |inner| {
            inner.write(|inner, txn| inner.append_feed(txn, &HistoryEvent::Fleet(event.clone())))
        })
        .await
    }

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
