//! The store for a fleet: several appliances share one Redis. Every write
//! that must be atomic is one Lua script (scripts run atomically, and unlike
//! WATCH/MULTI they are safe on the shared multiplexed connection). Every
//! call is bounded by `op_timeout`, so a Redis outage turns into a prompt
//! `Unavailable` — the proxy keeps routing from its last table and refuses
//! new wakes — and the `ConnectionManager` reconnects once Redis is back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, RedisError, RedisResult, Script};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{check_id, decode, encode, StoreError};
use crate::history::{
    feed_payload, newest_in_order, parse_payload, payload_time, player_ms_by_hour, HistoryEvent,
    HistoryPage, Pruned, AGGREGATE_MS,
};
use crate::model::{
    creation, new_token, now_unix_ms, Change, ServerRecord, SessionRecord, Transition,
    TransitionFilter, WakeLease,
};
use crate::store::{Documents, History, Servers, Sessions, StateStore, WakeLock, LOG_CAPACITY};

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
    /// Key prefix, so several fleets (or tests) can share one Redis.
    pub prefix: String,
    /// Upper bound for any one call, retries included.
    pub op_timeout: Duration,
    /// How long an appliance's session counts outlive its last heartbeat.
    pub live_ttl: Duration,
    /// How often `watch()` re-reads the version counter, because pub/sub
    /// drops messages sent while the subscriber reconnects.
    pub poll_interval: Duration,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: "warden".to_string(),
            op_timeout: Duration::from_secs(2),
            live_ttl: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// Shared helpers for the scripts below: append a transition to the global
/// and the per-server sorted sets (score = time, member = zero-padded
/// sequence + JSON, so members are unique and order within a millisecond is
/// append order), append to the history feed (score = position, member = zero-padded
/// position + `time|event JSON`, trimmed to `cap` entries), and bump + publish the version.
/// By convention KEYS[1] is the version key and ARGV[1] the change channel in every
/// writing script.
macro_rules! prelude {
    () => {
        r#"
local function append(all, one, seqkey, at, json)
  local seq = redis.call('INCR', seqkey)
  local m = string.format('%020d', seq) .. '|' .. json
  redis.call('ZADD', all, at, m)
  redis.call('ZADD', one, at, m)
end
local function feed(key, seqkey, payload, cap)
  local seq = redis.call('INCR', seqkey)
  redis.call('ZADD', key, seq, string.format('%020d', seq) .. '|' .. payload)
  redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(cap) + 1))
end
local function bump()
  local v = redis.call('INCR', KEYS[1])
  redis.call('PUBLISH', ARGV[1], v)
end
"#
    };
}

// KEYS: version servers tr_all tr_one tr_seq feed feed_seq;
// ARGV: channel id record transition at feed_payload feed_cap
const PUT_NEW: &str = concat!(
    prelude!(),
    r#"
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
append(KEYS[3], KEYS[4], KEYS[5], ARGV[5], ARGV[4])
feed(KEYS[6], KEYS[7], ARGV[6], ARGV[7])
bump()
return 1
"#
);

// Compare-and-set on the exact stored JSON (which includes the epoch).
// KEYS: version servers tr_all tr_one tr_seq feed feed_seq;
// ARGV: channel id old new transition at feed_payload feed_cap
const APPLY: &str = concat!(
    prelude!(),
    r#"
local cur = redis.call('HGET', KEYS[2], ARGV[2])
if not cur then return 0 end
if cur ~= ARGV[3] then return 1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
append(KEYS[3], KEYS[4], KEYS[5], ARGV[6], ARGV[5])
feed(KEYS[6], KEYS[7], ARGV[7], ARGV[8])
bump()
return 2
"#
);

// KEYS: version servers lastend; ARGV: channel id
const DELETE: &str = concat!(
    prelude!(),
    r#"
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], ARGV[2])
bump()
return 1
"#
);

// KEYS: version docs; ARGV: channel id json create
const DOC_PUT: &str = concat!(
    prelude!(),
    r#"
if ARGV[4] == '1' then
  if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
else
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
end
bump()
return 1
"#
);

// KEYS: version docs; ARGV: channel id
const DOC_DELETE: &str = concat!(
    prelude!(),
    r#"
if redis.call('HDEL', KEYS[2], ARGV[2]) == 0 then return 0 end
bump()
return 1
"#
);

// KEYS: version sessions open live appliances starts server_starts feed feed_seq;
// ARGV: channel id json server appliance ttl_ms start feed_payload feed_cap
const SESSION_START: &str = concat!(
    prelude!(),
    r#"
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
redis.call('PEXPIRE', KEYS[4], ARGV[6])
redis.call('SADD', KEYS[5], ARGV[5])
redis.call('ZADD', KEYS[6], ARGV[7], ARGV[2])
redis.call('ZADD', KEYS[7], ARGV[7], ARGV[2])
feed(KEYS[8], KEYS[9], ARGV[8], ARGV[9])
bump()
return 1
"#
);

// A count that expired with its appliance is not driven below zero.
// KEYS: version sessions open live lastend ends server_ends feed feed_seq;
// ARGV: channel id old new server end_ms feed_payload feed_cap
const SESSION_END: &str = concat!(
    prelude!(),
    r#"
local cur = redis.call('HGET', KEYS[2], ARGV[2])
if not cur then return 0 end
if cur ~= ARGV[3] then return 1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[6], ARGV[6], ARGV[2])
redis.call('ZADD', KEYS[7], ARGV[6], ARGV[2])
feed(KEYS[8], KEYS[9], ARGV[7], ARGV[8])
if redis.call('SREM', KEYS[3], ARGV[2]) == 1 then
  local c = tonumber(redis.call('HGET', KEYS[4], ARGV[5]) or '0')
  if c > 0 then redis.call('HINCRBY', KEYS[4], ARGV[5], -1) end
end
local last = tonumber(redis.call('HGET', KEYS[5], ARGV[5]) or '0')
if tonumber(ARGV[6]) > last then redis.call('HSET', KEYS[5], ARGV[5], ARGV[6]) end
bump()
return 2
"#
);

// Removes ended sessions whose player time the caller split into hours, adding that
// time to the hourly aggregates; a session another appliance pruned first is skipped, so
// its time is added once. KEYS: sessions starts ends; ARGV, per session: id server_starts
// server_ends player_ms n, then n pairs of hour start and ms.
const PRUNE_SESSIONS: &str = r#"
local i, n = 1, 0
while i <= #ARGV do
  local id, nb = ARGV[i], tonumber(ARGV[i + 4])
  redis.call('ZREM', KEYS[3], id)
  if redis.call('HDEL', KEYS[1], id) == 1 then
    n = n + 1
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', ARGV[i + 1], id)
    redis.call('ZREM', ARGV[i + 2], id)
    for b = 0, nb - 1 do
      redis.call('HINCRBY', ARGV[i + 3], ARGV[i + 5 + 2 * b], ARGV[i + 6 + 2 * b])
    end
  end
  i = i + 5 + 2 * nb
end
return n
"#;

// Sums the live counts of every appliance whose counts have not expired.
// Reads keys derived from the appliance set, which is fine on a single Redis
// (not on a cluster). KEYS: appliances; ARGV: live_prefix server
const LIVE_COUNT: &str = r#"
local n = 0
for _, a in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local c = tonumber(redis.call('HGET', ARGV[1] .. a, ARGV[2]) or '0')
  if c and c > 0 then n = n + c end
end
return n
"#;

// Refreshes the TTL; if the counts already expired (the appliance paused
// longer than the TTL but is alive), rebuilds them from its open sessions.
// KEYS: live appliances open sessions; ARGV: appliance ttl_ms
const HEARTBEAT: &str = r#"
redis.call('SADD', KEYS[2], ARGV[1])
if redis.call('PEXPIRE', KEYS[1], ARGV[2]) == 1 then return 1 end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local j = redis.call('HGET', KEYS[4], id)
  if j then
    local s = cjson.decode(j)
    if s.appliance == ARGV[1] and (s.end_unix_ms == nil or s.end_unix_ms == cjson.null) then
      redis.call('HINCRBY', KEYS[1], s.server, 1)
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
"#;

// The lock and its fencing epoch in one step, so a holder always has an epoch.
// KEYS: lock epoch; ARGV: token ttl_ms
const WAKE_ACQUIRE: &str = r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('INCR', KEYS[2])
"#;

// KEYS: lock; ARGV: token ttl_ms
const WAKE_RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

// KEYS: lock; ARGV: token
const WAKE_RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// Key names. Ids cannot contain ':' (see `check_id`), so no two ids map to
/// the same key.
#[derive(Clone)]
struct Keys {
    p: String,
}

impl Keys {
    fn servers(&self) -> String {
        format!("{}:servers", self.p)
    }
    /// Kept apart from the server JSON so ending a session never disturbs the
    /// compare-and-set on the record.
    fn last_end(&self) -> String {
        format!("{}:last-session-end", self.p)
    }
    fn tr_all(&self) -> String {
        format!("{}:transitions", self.p)
    }
    fn tr_one(&self, server: &str) -> String {
        format!("{}:transitions:{server}", self.p)
    }
    fn tr_seq(&self) -> String {
        format!("{}:transition-seq", self.p)
    }
    fn sessions(&self) -> String {
        format!("{}:sessions", self.p)
    }
    fn open(&self) -> String {
        format!("{}:open-sessions", self.p)
    }
    /// Session ids scored by start time and by end time, fleet-wide and per server.
    fn starts(&self) -> String {
        format!("{}:session-starts", self.p)
    }
    fn ends(&self) -> String {
        format!("{}:session-ends", self.p)
    }
    fn server_starts(&self, server: &str) -> String {
        format!("{}:session-starts:{server}", self.p)
    }
    fn server_ends(&self, server: &str) -> String {
        format!("{}:session-ends:{server}", self.p)
    }
    /// Hour start → player ms of pruned sessions.
    fn player_ms(&self, server: &str) -> String {
        format!("{}:player-ms:{server}", self.p)
    }
    /// Set once the sessions written before the time index are indexed.
    fn session_index(&self) -> String {
        format!("{}:session-index", self.p)
    }
    fn feed(&self) -> String {
        format!("{}:feed", self.p)
    }
    fn feed_seq(&self) -> String {
        format!("{}:feed-seq", self.p)
    }
    fn live_prefix(&self) -> String {
        format!("{}:live:", self.p)
    }
    fn live(&self, appliance: &str) -> String {
        format!("{}:live:{appliance}", self.p)
    }
    fn appliances(&self) -> String {
        format!("{}:appliances", self.p)
    }
    fn wake(&self, server: &str) -> String {
        format!("{}:wake:{server}", self.p)
    }
    fn wake_epoch(&self, server: &str) -> String {
        format!("{}:wake-epoch:{server}", self.p)
    }
    fn docs(&self, kind: &str) -> String {
        format!("{}:docs:{kind}", self.p)
    }
    fn log(&self, kind: &str) -> String {
        format!("{}:log:{kind}", self.p)
    }
    fn version(&self) -> String {
        format!("{}:version", self.p)
    }
    fn channel(&self) -> String {
        format!("{}:changes", self.p)
    }
}

struct Scripts {
    put_new: Script,
    apply: Script,
    delete: Script,
    session_start: Script,
    session_end: Script,
    prune_sessions: Script,
    live_count: Script,
    heartbeat: Script,
    wake_acquire: Script,
    wake_renew: Script,
    wake_release: Script,
    doc_put: Script,
    doc_delete: Script,
}

pub struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
    /// host:port only: never the URL, which may carry a password.
    addr: String,
    cfg: RedisConfig,
    keys: Keys,
    scripts: Scripts,
    version_tx: Arc<watch::Sender<u64>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        let watcher = self.watcher.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = watcher.take() {
            task.abort();
        }
    }
}

/// Whether `e` means "could not talk to Redis" rather than "Redis said no".
fn is_unreachable(e: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::BusyLoading)
                | ErrorKind::Server(ServerErrorKind::TryAgain)
                | ErrorKind::Server(ServerErrorKind::MasterDown)
        )
}

fn describe(e: &RedisError) -> String {
    if e.is_connection_refusal() {
        "connection refused".to_string()
    } else if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    }
}

impl RedisStore {
    /// Prepares the store without connecting, so an appliance starts (and
    /// routes from its last table) while Redis is down; `health()` tells
    /// whether Redis answers. Fails only on an unusable URL.
    /// Must run inside a tokio runtime (the connection manager spawns tasks).
    pub fn open(cfg: RedisConfig) -> Result<Self, StoreError> {
        check_id("prefix", &cfg.prefix)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::Invalid(
                "the redis store must be opened inside a tokio runtime".to_string(),
            ));
        }
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| StoreError::Invalid(format!("redis url: {e}")))?;
        let addr = client.get_connection_info().addr().to_string();
        let connect_timeout = cfg.op_timeout.min(Duration::from_secs(1));
        let manager_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(cfg.op_timeout))
            // Reconnect attempts are what callers wait on while Redis is
            // down; keep them short and let the next call try again.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(250));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_cfg)
            .map_err(|e| StoreError::Invalid(format!("redis at {addr}: {e}")))?;
        let (version_tx, _) = watch::channel(0);
        Ok(RedisStore {
            client,
            conn,
            addr,
            keys: Keys {
                p: cfg.prefix.clone(),
            },
            cfg,
            scripts: Scripts {
                put_new: Script::new(PUT_NEW),
                apply: Script::new(APPLY),
                delete: Script::new(DELETE),
                session_start: Script::new(SESSION_START),
                session_end: Script::new(SESSION_END),
                prune_sessions: Script::new(PRUNE_SESSIONS),
                live_count: Script::new(LIVE_COUNT),
                heartbeat: Script::new(HEARTBEAT),
                wake_acquire: Script::new(WAKE_ACQUIRE),
                wake_renew: Script::new(WAKE_RENEW),
                wake_release: Script::new(WAKE_RELEASE),
                doc_put: Script::new(DOC_PUT),
                doc_delete: Script::new(DOC_DELETE),
            },
            version_tx: Arc::new(version_tx),
            watcher: Mutex::new(None),
        })
    }

    fn map_err(&self, e: RedisError) -> StoreError {
        if is_unreachable(&e) {
            StoreError::Unavailable(format!("redis at {}: {}", self.addr, describe(&e)))
        } else {
            StoreError::Backend(format!("redis at {}: {e}", self.addr))
        }
    }

    /// Runs `op` within `op_timeout`. A refused connection means the command
    /// was never sent, so any call is retried once; other connection errors
    /// only for `idempotent` calls (the retry waits for the manager's fresh
    /// connection, which is what makes the first call after a Redis restart
    /// succeed).
    async fn call<T, F, Fut>(&self, idempotent: bool, op: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempt = async {
            match op(self.conn.clone()).await {
                Err(e) if e.is_connection_refusal() || (idempotent && is_unreachable(&e)) => {
                    op(self.conn.clone()).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.cfg.op_timeout, attempt).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_err(e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis at {}: no answer within {} ms",
                self.addr,
                self.cfg.op_timeout.as_millis()
            ))),
        }
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd, idempotent: bool) -> Result<T, StoreError> {
        self.call(
            idempotent,
            |mut c| async move { cmd.query_async(&mut c).await },
        )
        .await
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
        idempotent: bool,
    ) -> Result<T, StoreError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let inv = &inv;
        self.call(
            idempotent,
            |mut c| async move { inv.invoke_async(&mut c).await },
        )
        .await
    }

    /// The raw record JSON (what compare-and-set compares) and the separately
    /// kept last session end.
    async fn get_raw(&self, id: &str) -> Result<Option<(String, ServerRecord)>, StoreError> {
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

    async fn get_session(&self, id: &str) -> Result<Option<(String, SessionRecord)>, StoreError> {
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
    async fn sessions_by_id(&self, ids: &[String]) -> Result<Vec<SessionRecord>, StoreError> {
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

    /// A store written before the time index existed: index its sessions, once.
    async fn index_old_sessions(&self) -> Result<(), StoreError> {
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

    /// Removes up to `batch` sessions that ended before `before`; see [`PRUNE_SESSIONS`].
    async fn prune_sessions(&self, before: u64, batch: usize) -> Result<u64, StoreError> {
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
    async fn prune_feed(&self, before: u64, batch: usize) -> Result<u64, StoreError> {
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

    async fn read_version(&self) -> Result<u64, StoreError> {
        let v: Option<u64> = self
            .query(redis::cmd("GET").arg(self.keys.version()), true)
            .await?;
        Ok(v.unwrap_or(0))
    }

    fn start_watcher(&self) {
        let mut watcher = self.watcher.lock().unwrap_or_else(|p| p.into_inner());
        if watcher.is_some() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "state store watch() called outside a tokio runtime; changes will not be seen"
            );
            return;
        };
        let poller = Poller {
            client: self.client.clone(),
            store: RedisStore::open(self.cfg.clone()).ok(),
            channel: self.keys.channel(),
            tx: self.version_tx.clone(),
            cfg: self.cfg.clone(),
        };
        *watcher = Some(rt.spawn(poller.run()));
    }
}

fn merge_last_end(record: &mut ServerRecord, last_end: Option<u64>) {
    record.last_session_end_unix_ms = record.last_session_end_unix_ms.max(last_end);
}

/// The background half of `watch()`: a dedicated pub/sub connection for
/// prompt notice, plus polling of the version counter because pub/sub loses
/// messages across reconnects. Reconnects with backoff forever.
struct Poller {
    client: redis::Client,
    /// Its own store handle (own connection manager, no watcher), so it holds
    /// no reference that would keep the caller's store alive.
    store: Option<RedisStore>,
    channel: String,
    tx: Arc<watch::Sender<u64>>,
    cfg: RedisConfig,
}

impl Poller {
    async fn poll(&self) {
        let Some(store) = &self.store else { return };
        match store.read_version().await {
            // Any difference counts: after Redis lost its data the counter
            // restarts lower, and watchers must still re-read.
            Ok(v) => {
                self.tx.send_if_modified(|cur| {
                    let changed = *cur != v;
                    *cur = v;
                    changed
                });
            }
            Err(e) => tracing::debug!(error = %e, "state store version poll failed"),
        }
    }

    async fn run(self) {
        let min_backoff = Duration::from_millis(100);
        let mut backoff = min_backoff;
        loop {
            let pubsub = tokio::time::timeout(self.cfg.op_timeout, async {
                let mut ps = self.client.get_async_pubsub().await?;
                ps.subscribe(&self.channel).await?;
                Ok::<_, RedisError>(ps)
            })
            .await;
            match pubsub {
                Ok(Ok(mut ps)) => {
                    backoff = min_backoff;
                    // Catch up on whatever was missed while unsubscribed.
                    self.poll().await;
                    let mut messages = ps.on_message();
                    let mut tick = tokio::time::interval(self.cfg.poll_interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            msg = messages.next() => {
                                if msg.is_none() {
                                    tracing::debug!("state store pub/sub connection closed; reconnecting");
                                    break;
                                }
                            }
                            _ = tick.tick() => {}
                        }
                        // The message's payload is not trusted for the value:
                        // reading the counter keeps the sequence in order.
                        self.poll().await;
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "state store pub/sub connect failed"),
                Err(_) => tracing::debug!("state store pub/sub connect timed out"),
            }
            // Keep polling while backing off: if only pub/sub is broken,
            // watchers still see changes within the poll interval.
            let until = tokio::time::Instant::now() + backoff;
            while tokio::time::Instant::now() < until {
                self.poll().await;
                tokio::time::sleep(self.cfg.poll_interval.min(backoff)).await;
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

#[async_trait]
impl StateStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn health(&self) -> Result<(), StoreError> {
        let _: String = self.query(&redis::cmd("PING"), true).await?;
        Ok(())
    }

    async fn version(&self) -> Result<u64, StoreError> {
        self.read_version().await
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.start_watcher();
        self.version_tx.subscribe()
    }
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

#[async_trait]
impl History for RedisStore {
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

#[async_trait]
impl WakeLock for RedisStore {
    async fn acquire_wake(
        &self,
        server: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<WakeLease>, StoreError> {
        check_id("server", server)?;
        let token = new_token(owner);
        let epoch: Option<u64> = self
            .invoke(
                &self.scripts.wake_acquire,
                &[self.keys.wake(server), self.keys.wake_epoch(server)],
                &[token.clone(), ttl.as_millis().max(1).to_string()],
                false,
            )
            .await?;
        Ok(epoch.map(|fencing_epoch| WakeLease {
            server: server.to_string(),
            token,
            fencing_epoch,
        }))
    }

    async fn renew_wake(&self, lease: &WakeLease, ttl: Duration) -> Result<bool, StoreError> {
        let n: i64 = self
            .invoke(
                &self.scripts.wake_renew,
                &[self.keys.wake(&lease.server)],
                &[lease.token.clone(), ttl.as_millis().max(1).to_string()],
                true,
            )
            .await?;
        Ok(n == 1)
    }

    async fn release_wake(&self, lease: &WakeLease) -> Result<bool, StoreError> {
        let n: i64 = self
            .invoke(
                &self.scripts.wake_release,
                &[self.keys.wake(&lease.server)],
                std::slice::from_ref(&lease.token),
                false,
            )
            .await?;
        Ok(n == 1)
    }
}

#[async_trait]
impl Documents for RedisStore {
    async fn put_doc(
        &self,
        kind: &'static str,
        id: &str,
        json: &str,
        create: bool,
    ) -> Result<(), StoreError> {
        check_id(kind, id)?;
        let k = &self.keys;
        let written: i64 = self
            .invoke(
                &self.scripts.doc_put,
                &[k.version(), k.docs(kind)],
                &[
                    k.channel(),
                    id.to_string(),
                    json.to_string(),
                    if create { "1" } else { "0" }.to_string(),
                ],
                !create,
            )
            .await?;
        if written == 0 {
            return Err(StoreError::AlreadyExists {
                kind,
                id: id.to_string(),
            });
        }
        Ok(())
    }

    async fn get_doc(&self, kind: &'static str, id: &str) -> Result<Option<String>, StoreError> {
        self.query(redis::cmd("HGET").arg(self.keys.docs(kind)).arg(id), true)
            .await
    }

    async fn list_docs(&self, kind: &'static str) -> Result<Vec<(String, String)>, StoreError> {
        let all: std::collections::BTreeMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(self.keys.docs(kind)), true)
            .await?;
        Ok(all.into_iter().collect())
    }

    async fn delete_doc(&self, kind: &'static str, id: &str) -> Result<bool, StoreError> {
        let k = &self.keys;
        let n: i64 = self
            .invoke(
                &self.scripts.doc_delete,
                &[k.version(), k.docs(kind)],
                &[k.channel(), id.to_string()],
                true,
            )
            .await?;
        Ok(n == 1)
    }

    async fn append_log(&self, kind: &'static str, json: &str) -> Result<(), StoreError> {
        let key = self.keys.log(kind);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("RPUSH")
            .arg(&key)
            .arg(json)
            .ignore()
            .cmd("LTRIM")
            .arg(&key)
            .arg(-(crate::store::LOG_CAPACITY as i64))
            .arg(-1)
            .ignore();
        let pipe = &pipe;
        self.call(false, |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    async fn read_log(&self, kind: &'static str, limit: usize) -> Result<Vec<String>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = -(limit.min(crate::store::LOG_CAPACITY) as i64);
        self.query(
            redis::cmd("LRANGE")
                .arg(self.keys.log(kind))
                .arg(start)
                .arg(-1),
            true,
        )
        .await
    }
}
