//! The history feed, the session time index and the retention on Redis.

use std::collections::HashMap;

use async_trait::async_trait;

use super::RedisStore;
use crate::error::{decode, StoreError};
use crate::history::{
    feed_payload, newest_in_order, parse_payload, payload_time, player_ms_by_hour, FleetEvent,
    HistoryEvent, HistoryPage, Pruned, AGGREGATE_MS,
};
use crate::model::now_unix_ms;
use crate::model::SessionRecord;
use crate::store::{History, LOG_CAPACITY};

impl RedisStore {
    /// A store written before the time index existed: index its sessions, once.
    pub(super) async fn index_old_sessions(&self) -> Result<(), StoreError> {
        let k = &self.keys;
        let done: bool = self
            .query(redis::cmd("EXISTS").arg(k.session_index()), true)
            .await?;
        if done {
            return Ok(());
        }
        let all: Vec<String> = self
            .query(redis::cmd("HVALS").arg(k.sessions()), true)
            .await?;
        for chunk in all.chunks(1000) {
            let mut pipe = redis::pipe();
            for json in chunk {
                let s: SessionRecord = decode("session", json)?;
                for key in [k.starts(), k.server_starts(&s.server)] {
                    pipe.cmd("ZADD")
                        .arg(key)
                        .arg(s.start_unix_ms)
                        .arg(&s.id)
                        .ignore();
                }
                if let Some(end) = s.end_unix_ms {
                    for key in [k.ends(), k.server_ends(&s.server)] {
                        pipe.cmd("ZADD").arg(key).arg(end).arg(&s.id).ignore();
                    }
                }
            }
            let pipe = &pipe;
            self.call(
                true,
                |mut c| async move { pipe.query_async::<()>(&mut c).await },
            )
            .await?;
        }
        self.query::<()>(redis::cmd("SET").arg(k.session_index()).arg(1), true)
            .await
    }

    /// Removes up to `batch` sessions that ended before `before`; see `lua/prune_sessions.lua`.
    pub(super) async fn prune_sessions(
        &self,
        before: u64,
        batch: usize,
    ) -> Result<u64, StoreError> {
        let k = &self.keys;
        let ids: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(k.ends())
                    .arg("-inf")
                    .arg(format!("({before}"))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(i64::try_from(batch).unwrap_or(i64::MAX)),
                true,
            )
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let raw: Vec<Option<String>> = self
            .query(redis::cmd("HMGET").arg(k.sessions()).arg(&ids), true)
            .await?;
        let mut args = Vec::new();
        for (id, json) in ids.iter().zip(raw) {
            args.push(id.clone());
            let Some(json) = json else {
                // Already gone: only its index entry is left to remove.
                args.extend([String::new(), String::new(), String::new(), "0".into()]);
                continue;
            };
            let s: SessionRecord = decode(&format!("session {id}"), &json)?;
            let hours =
                player_ms_by_hour(s.start_unix_ms, s.end_unix_ms.unwrap_or(s.start_unix_ms));
            args.extend([
                k.server_starts(&s.server),
                k.server_ends(&s.server),
                k.player_ms(&s.server),
                hours.len().to_string(),
            ]);
            for (hour, ms) in hours {
                args.extend([hour.to_string(), ms.to_string()]);
            }
        }
        let _removed_here: i64 = self
            .invoke(
                &self.scripts.prune_sessions,
                &[k.sessions(), k.starts(), k.ends()],
                &args,
                true,
            )
            .await?;
        // What left the index, whichever appliance removed the record.
        Ok(ids.len() as u64)
    }

    /// Removes up to `batch` of the oldest feed entries, those recorded before `before`.
    pub(super) async fn prune_feed(&self, before: u64, batch: usize) -> Result<u64, StoreError> {
        let key = self.keys.feed();
        let stop = i64::try_from(batch).unwrap_or(i64::MAX).saturating_sub(1);
        let members: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(&key).arg(0).arg(stop), true)
            .await?;
        let mut old = Vec::new();
        for m in members {
            let payload = m.split_once('|').map_or("", |(_, p)| p);
            if payload_time(payload)? >= before {
                break;
            }
            old.push(m);
        }
        if !old.is_empty() {
            self.query::<()>(redis::cmd("ZREM").arg(&key).arg(&old), true)
                .await?;
        }
        Ok(old.len() as u64)
    }
}

#[async_trait]
impl History for RedisStore {
    async fn record_fleet_event(&self, event: FleetEvent) -> Result<(), StoreError> {
        let k = &self.keys;
        let payload = feed_payload(&HistoryEvent::Fleet(event), now_unix_ms())?;
        let _: i64 = self
            .invoke(
                &self.scripts.fleet_event,
                &[k.version(), k.feed(), k.feed_seq()],
                &[k.channel(), payload, LOG_CAPACITY.to_string()],
                false,
            )
            .await?;
        Ok(())
    }

    async fn history_head(&self) -> Result<u64, StoreError> {
        let head: Option<u64> = self
            .query(redis::cmd("GET").arg(self.keys.feed_seq()), true)
            .await?;
        Ok(head.unwrap_or(0))
    }

    async fn history_after(&self, cursor: u64, limit: usize) -> Result<HistoryPage, StoreError> {
        let k = &self.keys;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZRANGEBYSCORE")
            .arg(k.feed())
            .arg(format!("({cursor}"))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(i64::try_from(limit).unwrap_or(i64::MAX))
            .cmd("GET")
            .arg(k.feed_seq());
        let pipe = &pipe;
        let (members, head): (Vec<String>, Option<u64>) = self
            .call(true, |mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let mut entries = Vec::with_capacity(members.len());
        for m in &members {
            let parsed = m
                .split_once('|')
                .and_then(|(seq, payload)| Some((seq.parse::<u64>().ok()?, payload)));
            let Some((seq, payload)) = parsed else {
                return Err(StoreError::Corrupt {
                    key: k.feed(),
                    detail: format!("no position in `{m}`"),
                });
            };
            entries.push((seq, parse_payload(payload)?.1));
        }
        Ok(HistoryPage {
            entries,
            head: head.unwrap_or(0),
        })
    }

    async fn session_events(
        &self,
        server: Option<&str>,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<HistoryEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        let (starts, ends) = match server {
            Some(s) => (k.server_starts(s), k.server_ends(s)),
            None => (k.starts(), k.ends()),
        };
        let limit_arg = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        for key in [&starts, &ends] {
            pipe.cmd("ZREVRANGEBYSCORE")
                .arg(key)
                .arg("+inf")
                .arg(since_ms)
                .arg("LIMIT")
                .arg(0)
                .arg(limit_arg);
        }
        let pipe = &pipe;
        let (joined, left): (Vec<String>, Vec<String>) = self
            .call(true, |mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let mut out: Vec<HistoryEvent> = self
            .sessions_by_id(&joined)
            .await?
            .into_iter()
            .map(HistoryEvent::Joined)
            .collect();
        out.extend(
            self.sessions_by_id(&left)
                .await?
                .into_iter()
                .filter(|s| s.end_unix_ms.is_some())
                .map(HistoryEvent::Left),
        );
        Ok(newest_in_order(out, limit))
    }

    async fn player_time_aggregates(
        &self,
        server: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let all: HashMap<u64, u64> = self
            .query(redis::cmd("HGETALL").arg(self.keys.player_ms(server)), true)
            .await?;
        let mut out: Vec<(u64, u64)> = all
            .into_iter()
            .filter(|&(hour, _)| hour.saturating_add(AGGREGATE_MS) > from_ms && hour < to_ms)
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    async fn prune_history(&self, before_ms: u64, batch: usize) -> Result<Pruned, StoreError> {
        self.index_old_sessions().await?;
        Ok(Pruned {
            sessions: self.prune_sessions(before_ms, batch).await?,
            feed_entries: self.prune_feed(before_ms, batch).await?,
        })
    }
}
