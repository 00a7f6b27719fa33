//! Any S3-compatible object store (Hetzner Object Storage, MinIO, AWS, ...) via `object_store`,
//! which brings SigV4, retries and multipart upload over reqwest + rustls without pulling in
//! the whole AWS SDK. Listing and aborting unfinished multipart uploads, which object_store
//! cannot do, lives in `s3_uploads.rs`.

use super::s3_uploads::Multipart;
use super::{validate_key, ArchiveStore, ByteStream, ObjectInfo, ObjectMeta, Upload};
use crate::error::{ArchiveError, Result};
use crate::hashing::HashingAsyncRead;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::StreamReader;

/// S3 requires parts >= 5 MiB (except the last) and allows 10 000 parts.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// 16 MiB parts allow objects up to ~160 GB while buffering at most a few parts.
pub const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;

/// Connection settings for an S3-compatible store.
#[derive(Clone)]
pub struct S3Config {
    /// e.g. `https://fsn1.your-objectstorage.com`; `http://` is allowed (tests, LAN MinIO).
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`.
    pub path_style: bool,
    /// Multipart part size (and the in-memory buffer per in-flight part).
    pub part_size: usize,
    /// Parts uploaded concurrently; memory use is about `part_size * (concurrency + 1)`.
    pub upload_concurrency: usize,
}

impl S3Config {
    pub fn new(
        endpoint: impl Into<String>,
        region: impl Into<String>,
        bucket: impl Into<String>,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Self {
        S3Config {
            endpoint: endpoint.into(),
            region: region.into(),
            bucket: bucket.into(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            path_style: false,
            part_size: DEFAULT_PART_SIZE,
            upload_concurrency: 2,
        }
    }
}

// The secret must never reach logs through a `{:?}` of the config.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("path_style", &self.path_style)
            .field("part_size", &self.part_size)
            .field("upload_concurrency", &self.upload_concurrency)
            .finish()
    }
}

/// An S3 bucket as an [`ArchiveStore`].
#[derive(Debug, Clone)]
pub struct S3 {
    store: Arc<dyn ObjectStore>,
    part_size: usize,
    concurrency: usize,
    /// ListMultipartUploads/AbortMultipartUpload (keeps the keys, hides the secret in Debug)
    multipart: Multipart,
}

fn store_err(key: &str, e: object_store::Error) -> ArchiveError {
    match e {
        object_store::Error::NotFound { .. } => ArchiveError::NotFound {
            key: key.to_string(),
        },
        other => ArchiveError::Store {
            key: key.to_string(),
            source: Box::new(other),
        },
    }
}

fn obj_path(key: &str) -> Result<ObjPath> {
    validate_key(key)?;
    ObjPath::parse(key).map_err(|e| ArchiveError::InvalidKey {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// Fill up to `size` bytes (short only at end of stream): S3 parts must be full-size.
async fn read_part<R: AsyncRead + Unpin>(r: &mut R, size: usize, key: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(size);
    (&mut *r)
        .take(size as u64)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| ArchiveError::io(format!("reading data for `{key}`"), e))?;
    Ok(buf)
}

impl S3 {
    async fn feed_parts<R: AsyncRead + Unpin>(
        &self,
        parts: &mut WriteMultipart,
        reader: &mut R,
        key: &str,
    ) -> Result<()> {
        loop {
            // back-pressure: at most `concurrency` parts in flight (and in memory)
            parts
                .wait_for_capacity(self.concurrency)
                .await
                .map_err(|e| store_err(key, e))?;
            let chunk = read_part(reader, self.part_size, key).await?;
            let last = chunk.len() < self.part_size;
            if !chunk.is_empty() {
                parts.put(Bytes::from(chunk));
            }
            if last {
                break;
            }
        }
        parts
            .wait_for_capacity(0)
            .await
            .map_err(|e| store_err(key, e))
    }

    pub fn new(config: &S3Config) -> Result<Self> {
        if config.part_size < MIN_PART_SIZE {
            return Err(ArchiveError::Config(format!(
                "part_size {} is below the S3 minimum of {MIN_PART_SIZE} bytes",
                config.part_size
            )));
        }
        if config.bucket.is_empty() || config.endpoint.is_empty() {
            return Err(ArchiveError::Config(
                "S3 endpoint and bucket must be set".into(),
            ));
        }
        let store = AmazonS3Builder::new()
            .with_endpoint(&config.endpoint)
            .with_region(&config.region)
            .with_bucket_name(&config.bucket)
            .with_access_key_id(&config.access_key)
            .with_secret_access_key(&config.secret_key)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_allow_http(config.endpoint.starts_with("http://"))
            .build()
            .map_err(|e| ArchiveError::Config(e.to_string()))?;
        Ok(S3 {
            store: Arc::new(store),
            part_size: config.part_size,
            concurrency: config.upload_concurrency.max(1),
            multipart: Multipart::new(config)?,
        })
    }
}

#[async_trait]
impl ArchiveStore for S3 {
    async fn put(&self, key: &str, reader: ByteStream) -> Result<ObjectInfo> {
        let path = obj_path(key)?;
        let mut hashing = HashingAsyncRead::new(reader);
        let first = read_part(&mut hashing, self.part_size, key).await?;
        if first.len() < self.part_size {
            // fits in one part: a single PUT, atomic by nature
            self.store
                .put(&path, PutPayload::from(first))
                .await
                .map_err(|e| store_err(key, e))?;
        } else {
            let upload = self
                .store
                .put_multipart(&path)
                .await
                .map_err(|e| store_err(key, e))?;
            let mut parts = WriteMultipart::new_with_chunk_size(upload, self.part_size);
            parts.put(Bytes::from(first));
            // nothing is visible until CompleteMultipartUpload; on any failure abort so the
            // bucket does not keep paying for orphaned parts
            if let Err(e) = self.feed_parts(&mut parts, &mut hashing, key).await {
                if let Err(abort) = parts.abort().await {
                    tracing::warn!(key, error = %abort, "could not abort multipart upload");
                }
                return Err(e);
            }
            // finish() aborts by itself if the completion request fails
            parts.finish().await.map_err(|e| store_err(key, e))?;
        }
        let (bytes, sha256) = hashing.finish();
        Ok(ObjectInfo { bytes, sha256 })
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        let path = obj_path(key)?;
        let res = self.store.get(&path).await.map_err(|e| store_err(key, e))?;
        let stream = res.into_stream().map_err(std::io::Error::other);
        Ok(Box::new(StreamReader::new(stream)))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = obj_path(key)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(ObjectMeta {
                bytes: meta.size,
                modified_unix_ms: u64::try_from(meta.last_modified.timestamp_millis()).ok(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(key, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = obj_path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = prefix.trim_end_matches('/');
        let p = if prefix.is_empty() {
            None
        } else {
            Some(obj_path(prefix)?)
        };
        let mut stream = self.store.list(p.as_ref());
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| store_err(prefix, e))?;
            out.push(meta.location.to_string());
        }
        out.sort();
        Ok(out)
    }

    async fn unfinished_uploads(&self, prefix: &str) -> Result<Vec<Upload>> {
        let prefix = prefix.trim_end_matches('/');
        let s3_prefix = if prefix.is_empty() {
            String::new()
        } else {
            validate_key(prefix)?;
            format!("{prefix}/")
        };
        self.multipart
            .list(&s3_prefix)
            .await
            .map_err(|e| ArchiveError::Store {
                key: if prefix.is_empty() { "/" } else { prefix }.to_string(),
                source: Box::new(e),
            })
    }

    async fn abort_upload(&self, upload: &Upload) -> Result<()> {
        self.multipart.abort(upload).await
    }
}
