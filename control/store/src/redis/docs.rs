//! Documents (one hash per kind) and logs (one capped list per kind) on Redis.

use async_trait::async_trait;

use super::RedisStore;
use crate::error::{check_id, StoreError};
use crate::store::Documents;

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
