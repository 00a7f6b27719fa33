//! Node records in redb: the one-node fleet of a single appliance. redb's file lock makes
//! this process the only one using the file, so a registration left by an earlier process
//! is always replaced; lease renewals are committed without fsync (they need not survive a
//! crash, and a single box should not write its disk every few seconds for them).

use async_trait::async_trait;
use redb::{ReadableTable, WriteTransaction};

use super::error::Failure;
use super::tables::NODES;
use super::{EmbeddedStore, Inner};
use crate::error::{check_id, decode, encode, StoreError};
use crate::model::now_unix_ms;
use crate::node::{moved, registered, renewed, NodeRecord, NodeReport, NodeState};
use crate::store::Nodes;

type Decide = Box<dyn FnOnce(Option<&NodeRecord>) -> Result<NodeRecord, StoreError> + Send>;

impl Inner {
    /// Writes what `decide` makes of node `id`'s record, in one transaction; `bump` also
    /// bumps the change version (and commits durably).
    fn update_node(&self, id: &str, bump: bool, decide: Decide) -> Result<NodeRecord, Failure> {
        let step = |_: &Inner, txn: &WriteTransaction| -> Result<NodeRecord, Failure> {
            let mut table = txn.open_table(NODES)?;
            let current: Option<NodeRecord> = match table.get(id)? {
                Some(g) => Some(decode(&format!("node {id}"), g.value())?),
                None => None,
            };
            let next = decide(current.as_ref())?;
            let json = encode(&next)?;
            table.insert(id, json.as_str())?;
            Ok(next)
        };
        if bump {
            return self.write(step);
        }
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::None);
        let out = step(self, &txn)?;
        txn.commit()?;
        Ok(out)
    }
}

impl EmbeddedStore {
    async fn update_node(
        &self,
        id: &str,
        bump: bool,
        decide: Decide,
    ) -> Result<NodeRecord, StoreError> {
        check_id("node", id)?;
        let id = id.to_string();
        self.blocking(move |inner| inner.update_node(&id, bump, decide))
            .await
    }
}

#[async_trait]
impl Nodes for EmbeddedStore {
    async fn register_node(
        &self,
        record: NodeRecord,
        _replace: Option<&str>,
    ) -> Result<NodeRecord, StoreError> {
        let id = record.id.clone();
        self.update_node(
            &id,
            true,
            Box::new(move |cur| {
                // Only this process has the file open: whoever registered before is gone.
                let gone = cur.map(|c| c.instance.clone());
                registered(cur, record, gone.as_deref(), now_unix_ms())
            }),
        )
        .await
    }

    async fn renew_node(
        &self,
        id: &str,
        instance: &str,
        report: NodeReport,
    ) -> Result<NodeRecord, StoreError> {
        let (owned_id, instance) = (id.to_string(), instance.to_string());
        self.update_node(
            id,
            false,
            Box::new(move |cur| renewed(cur, &owned_id, &instance, report)),
        )
        .await
    }

    async fn node(&self, id: &str) -> Result<Option<NodeRecord>, StoreError> {
        let id = id.to_string();
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(NODES)?;
            let found = table.get(id.as_str())?;
            match found {
                Some(g) => Ok(Some(decode(&format!("node {id}"), g.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.blocking(|inner| {
            let txn = inner.read()?;
            let table = txn.open_table(NODES)?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let (k, v) = item?;
                out.push(decode(&format!("node {}", k.value()), v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn set_node_state(
        &self,
        id: &str,
        from: NodeState,
        to: NodeState,
    ) -> Result<NodeRecord, StoreError> {
        let owned_id = id.to_string();
        self.update_node(
            id,
            true,
            Box::new(move |cur| moved(cur, &owned_id, from, to, now_unix_ms())),
        )
        .await
    }
}
