//! Server records and their transitions on Redis: the record JSON in one hash (what
//! compare-and-set compares), transitions in sorted sets, writes in `put_new.lua`,
//! `apply.lua` and `delete.lua`.

use std::collections::HashMap;

use async_trait::async_trait;

use super::RedisStore;
use crate::error::{check_id, decode, encode, StoreError};
use crate::history::{feed_payload, HistoryEvent};
use crate::model::{creation, now_unix_ms, Change, ServerRecord, Transition, TransitionFilter};
use crate::store::{Servers, LOG_CAPACITY};

impl RedisStore {
    /// The raw record JSON (what compare-and-set compares) and the separately
    /// kept last session end.
    pub(super) async fn get_raw(
        &self,
        id: &str,
    ) -> Result<Option<(String, ServerRecord)>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGET")
            .arg(self.keys.servers())
            .arg(id)
            .cmd("HGET")
            .arg(self.keys.last_end())
            .arg(id);
        let pipe = &pipe;
        let (raw, last_end): (Option<String>, Option<u64>) = self
            .call(true, |mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        let mut record: ServerRecord = decode(&format!("server {id}"), &raw)?;
        merge_last_end(&mut record, last_end);
        Ok(Some((raw, record)))
    }
}

fn merge_last_end(record: &mut ServerRecord, last_end: Option<u64>) {
    record.last_session_end_unix_ms = record.last_session_end_unix_ms.max(last_end);
}

#[async_trait]
impl Servers for RedisStore {
    async fn get(&self, id: &str) -> Result<Option<ServerRecord>, StoreError> {
        Ok(self.get_raw(id).await?.map(|(_, r)| r))
    }

    async fn list(&self) -> Result<Vec<ServerRecord>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL")
            .arg(self.keys.servers())
            .cmd("HGETALL")
            .arg(self.keys.last_end());
        let pipe = &pipe;
        let (raw, last_end): (HashMap<String, String>, HashMap<String, u64>) = self
            .call(true, |mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let mut out = Vec::with_capacity(raw.len());
        for (id, json) in raw {
            let mut r: ServerRecord = decode(&format!("server {id}"), &json)?;
            merge_last_end(&mut r, last_end.get(&id).copied());
            out.push(r);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn put_new(&self, record: ServerRecord) -> Result<ServerRecord, StoreError> {
        check_id("server", &record.id)?;
        let at = now_unix_ms();
        let k = &self.keys;
        let created: i64 = self
            .invoke(
                &self.scripts.put_new,
                &[
                    k.version(),
                    k.servers(),
                    k.tr_all(),
                    k.tr_one(&record.id),
                    k.tr_seq(),
                    k.feed(),
                    k.feed_seq(),
                ],
                &[
                    k.channel(),
                    record.id.clone(),
                    encode(&record)?,
                    encode(&creation(&record, at))?,
                    at.to_string(),
                    feed_payload(&HistoryEvent::Transition(creation(&record, at)), at)?,
                    LOG_CAPACITY.to_string(),
                ],
                false,
            )
            .await?;
        if created == 0 {
            return Err(StoreError::AlreadyExists {
                kind: "server",
                id: record.id,
            });
        }
        Ok(record)
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let k = &self.keys;
        // Deleting twice has the same effect as once.
        let n: i64 = self
            .invoke(
                &self.scripts.delete,
                &[k.version(), k.servers(), k.last_end()],
                &[k.channel(), id.to_string()],
                true,
            )
            .await?;
        Ok(n == 1)
    }

    async fn apply(
        &self,
        id: &str,
        expected_epoch: u64,
        change: Change,
    ) -> Result<ServerRecord, StoreError> {
        let k = &self.keys;
        // Only a record re-created in between at the same epoch (delete +
        // put_new) makes the script see different JSON at the expected
        // epoch; re-reading resolves that.
        for _ in 0..3 {
            let (raw, current) = self
                .get_raw(id)
                .await?
                .ok_or_else(|| StoreError::server_not_found(id))?;
            if current.epoch != expected_epoch {
                return Err(StoreError::Conflict {
                    id: id.to_string(),
                    expected: expected_epoch,
                    actual: current.epoch,
                    state: current.state,
                });
            }
            // Checked on the record read; the script writes only if it is still that one.
            change.check_owner(&current)?;
            let at = now_unix_ms();
            let (next, t) = change.apply_to(&current, at);
            let outcome: i64 = self
                .invoke(
                    &self.scripts.apply,
                    &[
                        k.version(),
                        k.servers(),
                        k.tr_all(),
                        k.tr_one(id),
                        k.tr_seq(),
                        k.feed(),
                        k.feed_seq(),
                    ],
                    &[
                        k.channel(),
                        id.to_string(),
                        raw,
                        encode(&next)?,
                        encode(&t)?,
                        at.to_string(),
                        feed_payload(&HistoryEvent::Transition(t.clone()), at)?,
                        LOG_CAPACITY.to_string(),
                    ],
                    false,
                )
                .await?;
            match outcome {
                0 => return Err(StoreError::server_not_found(id)),
                2 => return Ok(next),
                _ => continue,
            }
        }
        let actual = self
            .get(id)
            .await?
            .ok_or_else(|| StoreError::server_not_found(id))?;
        Err(StoreError::Conflict {
            id: id.to_string(),
            expected: expected_epoch,
            actual: actual.epoch,
            state: actual.state,
        })
    }

    async fn transitions(&self, filter: &TransitionFilter) -> Result<Vec<Transition>, StoreError> {
        if filter.limit == 0 {
            return Ok(Vec::new());
        }
        let key = match &filter.server {
            Some(s) => self.keys.tr_one(s),
            None => self.keys.tr_all(),
        };
        let min = filter
            .since_ms
            .map_or("-inf".to_string(), |s| s.to_string());
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let members: Vec<String> = self
            .query(
                redis::cmd("ZREVRANGEBYSCORE")
                    .arg(key)
                    .arg("+inf")
                    .arg(min)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
                true,
            )
            .await?;
        let mut out = Vec::with_capacity(members.len());
        for m in members.iter().rev() {
            let json = m.split_once('|').map_or(m.as_str(), |(_, j)| j);
            let t: Transition = decode("transition", json)?;
            if filter.matches(&t) {
                out.push(t);
            }
        }
        Ok(out)
    }
}
