//! Sessions and live counts on Redis: session JSON in one hash, the open ones in a set,
//! per-appliance counts that expire with the appliance's heartbeat.

use async_trait::async_trait;

use super::RedisStore;
use crate::error::{check_id, decode, encode, StoreError};
use crate::history::{feed_payload, HistoryEvent};
use crate::model::{now_unix_ms, SessionRecord};
use crate::store::{Sessions, LOG_CAPACITY};

impl RedisStore {
    pub(super) async fn get_session(
        &self,
        id: &str,
    ) -> Result<Option<(String, SessionRecord)>, StoreError> {
        let raw: Option<String> = self
            .query(redis::cmd("HGET").arg(self.keys.sessions()).arg(id), true)
            .await?;
        match raw {
            Some(raw) => {
                let s = decode(&format!("session {id}"), &raw)?;
                Ok(Some((raw, s)))
            }
            None => Ok(None),
        }
    }

    /// The records of `ids` that exist, in the order given.
    pub(super) async fn sessions_by_id(
        &self,
        ids: &[String],
    ) -> Result<Vec<SessionRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = self
            .query(redis::cmd("HMGET").arg(self.keys.sessions()).arg(ids), true)
            .await?;
        raw.into_iter()
            .flatten()
            .map(|json| decode("session", &json))
            .collect()
    }
}

#[async_trait]
impl Sessions for RedisStore {
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
        let k = &self.keys;
        let created: i64 = self
            .invoke(
                &self.scripts.session_start,
                &[
                    k.version(),
                    k.sessions(),
                    k.open(),
                    k.live(&session.appliance),
                    k.appliances(),
                    k.starts(),
                    k.server_starts(&session.server),
                    k.feed(),
                    k.feed_seq(),
                ],
                &[
                    k.channel(),
                    session.id.clone(),
                    encode(&session)?,
                    session.server.clone(),
                    session.appliance.clone(),
                    self.cfg.live_ttl.as_millis().to_string(),
                    session.start_unix_ms.to_string(),
                    feed_payload(&HistoryEvent::Joined(session.clone()), now_unix_ms())?,
                    LOG_CAPACITY.to_string(),
                ],
                false,
            )
            .await?;
        if created == 0 {
            return Err(StoreError::AlreadyExists {
                kind: "session",
                id: session.id,
            });
        }
        Ok(())
    }

    async fn session_ended(&self, id: &str, end_unix_ms: u64) -> Result<SessionRecord, StoreError> {
        let k = &self.keys;
        for _ in 0..3 {
            let (raw, mut session) = self
                .get_session(id)
                .await?
                .ok_or_else(|| StoreError::session_not_found(id))?;
            if session.end_unix_ms.is_some() {
                return Ok(session);
            }
            let end = end_unix_ms.max(session.start_unix_ms);
            session.end_unix_ms = Some(end);
            let outcome: i64 = self
                .invoke(
                    &self.scripts.session_end,
                    &[
                        k.version(),
                        k.sessions(),
                        k.open(),
                        k.live(&session.appliance),
                        k.last_end(),
                        k.ends(),
                        k.server_ends(&session.server),
                        k.feed(),
                        k.feed_seq(),
                    ],
                    &[
                        k.channel(),
                        id.to_string(),
                        raw,
                        encode(&session)?,
                        session.server.clone(),
                        end.to_string(),
                        feed_payload(&HistoryEvent::Left(session.clone()), now_unix_ms())?,
                        LOG_CAPACITY.to_string(),
                    ],
                    // Compare-and-set on the old JSON: a repeat is a no-op.
                    true,
                )
                .await?;
            match outcome {
                0 => return Err(StoreError::session_not_found(id)),
                2 => return Ok(session),
                _ => continue,
            }
        }
        self.get_session(id)
            .await?
            .map(|(_, s)| s)
            .ok_or_else(|| StoreError::session_not_found(id))
    }

    async fn sessions(
        &self,
        server: Option<&str>,
        open_only: bool,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let raw: Vec<Option<String>> = if open_only {
            let ids: Vec<String> = self
                .query(redis::cmd("SMEMBERS").arg(self.keys.open()), true)
                .await?;
            if ids.is_empty() {
                Vec::new()
            } else {
                self.query(
                    redis::cmd("HMGET").arg(self.keys.sessions()).arg(&ids),
                    true,
                )
                .await?
            }
        } else {
            let all: Vec<String> = self
                .query(redis::cmd("HVALS").arg(self.keys.sessions()), true)
                .await?;
            all.into_iter().map(Some).collect()
        };
        let mut out = Vec::with_capacity(raw.len());
        for json in raw.into_iter().flatten() {
            let s: SessionRecord = decode("session", &json)?;
            // A session may end between the two reads above.
            if open_only && s.end_unix_ms.is_some() {
                continue;
            }
            if server.is_none_or(|srv| s.server == srv) {
                out.push(s);
            }
        }
        out.sort_by(|a, b| (a.start_unix_ms, &a.id).cmp(&(b.start_unix_ms, &b.id)));
        Ok(out)
    }

    async fn sessions_overlapping(
        &self,
        server: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let k = &self.keys;
        let mut pipe = redis::pipe();
        // Atomic: a session is either open or ended, never missed in between.
        pipe.atomic()
            .cmd("ZRANGEBYSCORE")
            .arg(k.server_ends(server))
            .arg(from_ms)
            .arg("+inf")
            .cmd("SMEMBERS")
            .arg(k.open());
        let pipe = &pipe;
        let (mut ids, open): (Vec<String>, Vec<String>) = self
            .call(true, |mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        ids.extend(open);
        ids.sort();
        ids.dedup();
        let mut out: Vec<SessionRecord> = self
            .sessions_by_id(&ids)
            .await?
            .into_iter()
            .filter(|s| s.server == server && s.start_unix_ms < to_ms)
            .collect();
        out.sort_by(|a, b| (a.start_unix_ms, &a.id).cmp(&(b.start_unix_ms, &b.id)));
        Ok(out)
    }

    async fn live_count(&self, server: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .invoke(
                &self.scripts.live_count,
                &[self.keys.appliances()],
                &[self.keys.live_prefix(), server.to_string()],
                true,
            )
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn heartbeat(&self, appliance: &str) -> Result<(), StoreError> {
        check_id("appliance", appliance)?;
        let k = &self.keys;
        let _: i64 = self
            .invoke(
                &self.scripts.heartbeat,
                &[k.live(appliance), k.appliances(), k.open(), k.sessions()],
                &[
                    appliance.to_string(),
                    self.cfg.live_ttl.as_millis().to_string(),
                ],
                true,
            )
            .await?;
        Ok(())
    }
}
