//! Node records on Redis: one hash, node id → record JSON, every write a compare-and-set on
//! the JSON read (`node_cas.lua`), decided by the rules in `crate::node`.

use std::collections::HashMap;

use async_trait::async_trait;

use super::RedisStore;
use crate::error::{check_id, decode, encode, StoreError};
use crate::model::now_unix_ms;
use crate::node::{moved, registered, renewed, NodeRecord, NodeReport, NodeState};
use crate::store::Nodes;

/// Attempts before a write that keeps losing its compare-and-set gives up.
const ATTEMPTS: usize = 5;

impl RedisStore {
    async fn node_raw(&self, id: &str) -> Result<Option<(String, NodeRecord)>, StoreError> {
        let raw: Option<String> = self
            .query(redis::cmd("HGET").arg(self.keys.nodes()).arg(id), true)
            .await?;
        match raw {
            Some(raw) => {
                let r = decode(&format!("node {id}"), &raw)?;
                Ok(Some((raw, r)))
            }
            None => Ok(None),
        }
    }

    /// Reads node `id`, lets `decide` make the next record from it, and writes that if the
    /// record is still the one read; otherwise reads and decides again.
    async fn update_node(
        &self,
        id: &str,
        bump: bool,
        decide: impl Fn(Option<&NodeRecord>) -> Result<NodeRecord, StoreError> + Send + Sync,
    ) -> Result<NodeRecord, StoreError> {
        check_id("node", id)?;
        let k = &self.keys;
        for _ in 0..ATTEMPTS {
            let current = self.node_raw(id).await?;
            let next = decide(current.as_ref().map(|(_, r)| r))?;
            let old = current.map(|(raw, _)| raw).unwrap_or_default();
            // A repeated compare-and-set fails harmlessly, so a retry after a lost answer is safe.
            let written: i64 = self
                .invoke(
                    &self.scripts.node_cas,
                    &[k.version(), k.nodes()],
                    &[
                        k.channel(),
                        id.to_string(),
                        old,
                        encode(&next)?,
                        if bump { "1" } else { "0" }.to_string(),
                    ],
                    true,
                )
                .await?;
            if written == 1 {
                return Ok(next);
            }
        }
        Err(StoreError::Backend(format!(
            "node {id}: the record changed under {ATTEMPTS} attempts in a row"
        )))
    }
}

#[async_trait]
impl Nodes for RedisStore {
    async fn register_node(
        &self,
        record: NodeRecord,
        replace: Option<&str>,
    ) -> Result<NodeRecord, StoreError> {
        let id = record.id.clone();
        self.update_node(&id, true, |cur| {
            registered(cur, record.clone(), replace, now_unix_ms())
        })
        .await
    }

    async fn renew_node(
        &self,
        id: &str,
        instance: &str,
        report: NodeReport,
    ) -> Result<NodeRecord, StoreError> {
        self.update_node(id, false, |cur| renewed(cur, id, instance, report))
            .await
    }

    async fn node(&self, id: &str) -> Result<Option<NodeRecord>, StoreError> {
        Ok(self.node_raw(id).await?.map(|(_, r)| r))
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let raw: HashMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(self.keys.nodes()), true)
            .await?;
        let mut out = Vec::with_capacity(raw.len());
        for (id, json) in raw {
            out.push(decode::<NodeRecord>(&format!("node {id}"), &json)?);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn set_node_state(
        &self,
        id: &str,
        from: NodeState,
        to: NodeState,
    ) -> Result<NodeRecord, StoreError> {
        self.update_node(id, true, |cur| moved(cur, id, from, to, now_unix_ms()))
            .await
    }
}
