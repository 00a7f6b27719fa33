//! Every round trip to Redis goes through here: bounded by `op_timeout`, retried once
//! when that is safe, and its error told apart as `Unavailable` (could not talk to
//! Redis) or `Backend` (Redis said no).

use std::future::Future;

use redis::aio::ConnectionManager;
use redis::{Cmd, FromRedisValue, RedisError, RedisResult, Script};

use super::RedisStore;
use crate::error::StoreError;

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
    pub(super) fn map_err(&self, e: RedisError) -> StoreError {
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
    pub(super) async fn call<T, F, Fut>(&self, idempotent: bool, op: F) -> Result<T, StoreError>
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
        self.call(
            idempotent,
            |mut c| async move { inv.invoke_async(&mut c).await },
        )
        .await
    }
}
