//! Documents ((kind, id) → JSON) and capped logs ((kind, sequence) → JSON) in redb.

use async_trait::async_trait;
use redb::ReadableTable;

use super::tables::{DOCS, LOGS};
use super::{bump, EmbeddedStore};
use crate::error::{check_id, StoreError};
use crate::store::Documents;

#[async_trait]
impl Documents for EmbeddedStore {
    async fn put_doc(
        &self,
        kind: &'static str,
        id: &str,
        json: &str,
        create: bool,
    ) -> Result<(), StoreError> {
        check_id(kind, id)?;
        let (id, json) = (id.to_string(), json.to_string());
        self.blocking(move |inner| {
            inner.write(|_, txn| {
                let mut table = txn.open_table(DOCS)?;
                if create && table.get((kind, id.as_str()))?.is_some() {
                    return Err(StoreError::AlreadyExists { kind, id }.into());
                }
                table.insert((kind, id.as_str()), json.as_str())?;
                Ok(())
            })
        })
        .await
    }

    async fn get_doc(&self, kind: &'static str, id: &str) -> Result<Option<String>, StoreError> {
        let id = id.to_string();
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(DOCS)?;
            let found = table.get((kind, id.as_str()))?;
            Ok(found.map(|g| g.value().to_string()))
        })
        .await
    }

    async fn list_docs(&self, kind: &'static str) -> Result<Vec<(String, String)>, StoreError> {
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(DOCS)?;
            let mut out = Vec::new();
            for item in table.range((kind, "")..)? {
                let (k, v) = item?;
                let (k_kind, id) = k.value();
                if k_kind != kind {
                    break;
                }
                out.push((id.to_string(), v.value().to_string()));
            }
            Ok(out)
        })
        .await
    }

    async fn delete_doc(&self, kind: &'static str, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.blocking(move |inner| {
            inner.write(|_, txn| {
                let mut table = txn.open_table(DOCS)?;
                let existed = table.remove((kind, id.as_str()))?.is_some();
                Ok(existed)
            })
        })
        .await
    }

    async fn append_log(&self, kind: &'static str, json: &str) -> Result<(), StoreError> {
        let json = json.to_string();
        self.blocking(move |inner| {
            let txn = inner.db.begin_write()?;
            {
                let seq = bump(&txn, &format!("log:{kind}"))?;
                let mut table = txn.open_table(LOGS)?;
                table.insert((kind, seq), json.as_str())?;
                let capacity = crate::store::LOG_CAPACITY as u64;
                if seq > capacity {
                    table.remove((kind, seq - capacity))?;
                }
            }
            Ok(txn.commit()?)
        })
        .await
    }

    async fn read_log(&self, kind: &'static str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.blocking(move |inner| {
            let txn = inner.read()?;
            let table = txn.open_table(LOGS)?;
            let mut out = Vec::new();
            for item in table.range((kind, 0)..=(kind, u64::MAX))?.rev().take(limit) {
                let (_, v) = item?;
                out.push(v.value().to_string());
            }
            out.reverse();
            Ok(out)
        })
        .await
    }
}
