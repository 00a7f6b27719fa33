//! Finding the primary through Redis Sentinel, as the Sentinel client guidelines say:
//! ask the sentinels for the address they name (`SENTINEL get-master-addr-by-name`),
//! then ask that server whether it is a primary (`ROLE`). All sentinels are asked at
//! once and the first answer that checks out wins, so one sentinel that hangs or still
//! names the old primary costs nothing; every step is bounded in time.
//!
//! (The `redis` crate's own `sentinel` feature asks the sentinels in their configured
//! order with no timeouts of its own, so one unreachable sentinel would stall every
//! failover; this is the same protocol, bounded and in parallel.)

use std::collections::HashSet;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Role,
};

/// Where the primary is, according to the sentinels.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    /// `host:port` of each sentinel (three on different machines, see the README).
    pub sentinels: Vec<String>,
    /// The name the sentinels watch the primary under (`sentinel monitor NAME …`).
    pub master_name: String,
}

/// One short-lived connection (to a sentinel or a candidate primary).
async fn connect(
    to: impl IntoConnectionInfo,
    within: Duration,
) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = Client::open(to).map_err(|e| e.to_string())?;
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(within))
        .set_response_timeout(Some(within));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(|e| e.to_string())
}

/// The primary's host and port as one sentinel names it; `None` if it watches no such
/// name.
async fn ask(
    sentinel: &str,
    name: &str,
    within: Duration,
) -> Result<Option<(String, u16)>, String> {
    let mut c = connect(format!("redis://{sentinel}/"), within).await?;
    redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(name)
        .query_async(&mut c)
        .await
        .map_err(|e| e.to_string())
}

/// Whether the server answers and says it is a primary. Sentinel keeps naming a dead
/// primary until it has failed over, and a demoted one may still answer.
async fn is_primary(at: ConnectionInfo, within: Duration) -> Result<(), String> {
    let mut c = connect(at, within).await?;
    let role: Role = redis::cmd("ROLE")
        .query_async(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    match role {
        Role::Primary { .. } => Ok(()),
        _ => Err("not a primary (yet)".to_string()),
    }
}

impl SentinelConfig {
    /// The current primary: its `host:port` and how to connect to it (`template` with the
    /// primary's address: the url's credentials and database), or why none could be
    /// found. Each network step is bounded by `within`; the caller bounds the whole.
    pub(super) async fn resolve(
        &self,
        template: &ConnectionInfo,
        within: Duration,
    ) -> Result<(String, ConnectionInfo), String> {
        let mut answers: FuturesUnordered<_> = self
            .sentinels
            .iter()
            .map(|s| async move { (s, ask(s, &self.master_name, within).await) })
            .collect();
        let mut checked = HashSet::new();
        let mut why = Vec::new();
        while let Some((sentinel, answer)) = answers.next().await {
            match answer {
                Ok(Some((host, port))) => {
                    let addr = if host.contains(':') {
                        format!("[{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    };
                    if !checked.insert(addr.clone()) {
                        continue;
                    }
                    let at = template.clone().set_addr(ConnectionAddr::Tcp(host, port));
                    match is_primary(at.clone(), within).await {
                        Ok(()) => return Ok((addr, at)),
                        Err(e) => why.push(format!("{addr} (named by {sentinel}): {e}")),
                    }
                }
                Ok(None) => why.push(format!(
                    "sentinel {sentinel} watches no primary named '{}'",
                    self.master_name
                )),
                Err(e) => why.push(format!("sentinel {sentinel}: {e}")),
            }
        }
        Err(why.join("; "))
    }
}
