//! Every round trip to Redis goes through here: bounded by `op_timeout`, retried once
//! when that is safe, and its error told apart as `Unavailable` (could not talk to
//! Redis, or it cannot take the call now) or `Backend` (Redis said no). With sentinels,
//! such a failure makes the link look for the primary again, and a script's writes wait
//! for one replica's acknowledgement before they count as done.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Cmd, FromRedisValue, RedisError, RedisResult, Script, ScriptInvocation};

use super::link::Primary;
use super::RedisStore;
use crate::error::StoreError;

/// Server error codes that mean "this server cannot take the call now", not "the call is
/// wrong": a replica, or a primary being demoted (READONLY); a primary short of replicas
/// (NOREPLICAS: `min-replicas-to-write`); a replica cut off from its primary
/// (MASTERDOWN); a server loading its data (LOADING); TRYAGAIN.
const NOT_NOW: &[&str] = &[
    "READONLY",
    "NOREPLICAS",
    "MASTERDOWN",
    "LOADING",
    "TRYAGAIN",
];

fn not_now(e: &RedisError) -> bool {
    e.clone()
        .into_server_errors()
        .is_some_and(|errs| errs.iter().any(|(_, s)| NOT_NOW.contains(&s.code())))
}

/// Whether `e` means "could not talk to Redis, or it cannot take this now" rather than
/// "Redis said no".
fn is_unreachable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || not_now(e)
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

/// The script, then `WAIT 1 wait_ms` on the same connection: WAIT counts the replicas
/// that have every write this connection sent before it, the script's included.
async fn invoke_acked<T: FromRedisValue>(
    inv: &ScriptInvocation<'_>,
    wait_ms: u64,
    c: &mut ConnectionManager,
) -> RedisResult<(T, i64)> {
    let value = inv.invoke_async(c).await?;
    let replicas = redis::cmd("WAIT")
        .arg(1)
        .arg(wait_ms)
        .query_async(c)
        .await?;
    Ok((value, replicas))
}

impl RedisStore {
    fn map_err(&self, p: &Arc<Primary>, e: RedisError) -> StoreError {
        if is_unreachable(&e) {
            self.link.lost(p);
            StoreError::Unavailable(format!("{}: {}", self.link.describe(Some(p)), describe(&e)))
        } else {
            StoreError::Backend(format!("{}: {e}", self.link.describe(Some(p))))
        }
    }

    /// Runs `op` within `op_timeout`. A refused connection means the command
    /// was never sent, so any call is retried once; other connection errors
    /// only for `idempotent` calls (the retry waits for the manager's fresh
    /// connection, which is what makes the first call after a Redis restart
    /// succeed; with sentinels it goes to the primary found anew).
    pub(super) async fn call<T, F, Fut>(&self, idempotent: bool, op: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempt = async {
            let p = self.link.primary().await?;
            match op(p.conn.clone()).await {
                Ok(v) => Ok(v),
                Err(e) if e.is_connection_refusal() || (idempotent && is_unreachable(&e)) => {
                    let _ = self.map_err(&p, e);
                    let p = self.link.primary().await?;
                    op(p.conn.clone()).await.map_err(|e| self.map_err(&p, e))
                }
                Err(e) => Err(self.map_err(&p, e)),
            }
        };
        match tokio::time::timeout(self.cfg.op_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "{}: no answer within {} ms",
                self.link.describe(None),
                self.cfg.op_timeout.as_millis()
            ))),
        }
    }

    pub(super) async fn query<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        idempotent: bool,
    ) -> Result<T, StoreError> {
        self.call(
            idempotent,
            |mut c| async move { cmd.query_async(&mut c).await },
        )
        .await
    }

    /// How long a script's writes may wait for a replica's acknowledgement: with
    /// sentinels, half the call's time (the other half is for the script and a retry).
    fn replica_wait(&self) -> Option<Duration> {
        self.link
            .is_sentinel()
            .then(|| (self.cfg.op_timeout / 2).max(Duration::from_millis(1)))
    }

    /// Runs a script. With sentinels its writes count only once a replica has them
    /// (`WAIT 1`): a primary lost in a failover takes with it no write it acknowledged.
    /// A write no replica acknowledged in time is `Unavailable`, its outcome unknown.
    pub(super) async fn invoke<T: FromRedisValue>(
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
        let Some(wait) = self.replica_wait() else {
            return self
                .call(
                    idempotent,
                    |mut c| async move { inv.invoke_async(&mut c).await },
                )
                .await;
        };
        let wait_ms = wait.as_millis() as u64;
        let (value, replicas): (T, i64) = self
            .call(idempotent, |mut c| async move {
                invoke_acked(inv, wait_ms, &mut c).await
            })
            .await?;
        if replicas < 1 {
            return Err(StoreError::Unavailable(format!(
                "{}: no replica acknowledged the write within {wait_ms} ms, so a failover \
                 could lose it",
                self.link.describe(None)
            )));
        }
        Ok(value)
    }
}
