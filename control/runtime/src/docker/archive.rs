//! Streaming a server's volume out of and into its container as a tar.
//!
//! Worlds are gigabytes, so nothing here holds more than one chunk in memory. A whole-transfer
//! deadline would either cut big worlds or not bound anything, so both directions are bounded
//! by *progress* instead: if no bytes move for `idle`, the transfer fails.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use tokio::io::AsyncRead;
use tokio::time::Instant;
use tokio_util::io::{ReaderStream, StreamReader};

use super::client::DockerClient;
use crate::RuntimeError;

/// The tar stream of a server's data, as returned by [`super::DockerRuntime::export_data`].
pub type DataReader = Pin<Box<dyn AsyncRead + Send>>;

/// Docker names entries after the last path component (`data/world/…`) unless the path ends
/// in `/.`; then they are relative (`./world/…`), which is what an upload into the same path
/// expects, so export and import round-trip.
fn contents_of(dir: &str) -> String {
    format!("{}/.", dir.trim_end_matches('/'))
}

/// Opens the download and waits for its first chunk, so a missing container or path fails
/// here rather than on the caller's first read.
pub(crate) async fn export(
    client: &DockerClient,
    container: &str,
    dir: &str,
    idle: Duration,
) -> Result<DataReader, RuntimeError> {
    let what = format!("download {dir} from container {container}");
    let opts = DownloadFromContainerOptionsBuilder::default()
        .path(&contents_of(dir))
        .build();
    let mut body = client.docker.download_from_container(container, Some(opts));
    let first = match tokio::time::timeout(client.limit.max(idle), body.next()).await {
        Err(_) => return Err(client.timed_out(&what, client.limit.max(idle))),
        Ok(None) => None,
        Ok(Some(Err(e))) => return Err(client.error(&what, e)),
        Ok(Some(Ok(chunk))) => Some(chunk),
    };
    let endpoint = client.endpoint.clone();
    let body = body.map(move |r| {
        r.map_err(|e| io::Error::other(format!("docker at {endpoint}: {what}: {e}")))
    });
    let chunks = stream::iter(first.map(Ok)).chain(body);
    Ok(Box::pin(StreamReader::new(idle_bounded(chunks, idle))))
}

/// Ends `inner` with a `TimedOut` error when it yields nothing for `idle`, and after the
/// first error, so a reader never sees data after a failure.
fn idle_bounded<S>(inner: S, idle: Duration) -> impl Stream<Item = io::Result<Bytes>> + Send
where
    S: Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
{
    stream::unfold(Some(inner), move |state| async move {
        let mut inner = state?;
        match tokio::time::timeout(idle, inner.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(inner))),
            Ok(Some(Err(e))) => Some((Err(e), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no data from docker for {idle:?}"),
                )),
                None,
            )),
        }
    })
}

/// Uploads a tar (plain, gzip, bzip2 or xz) and unpacks it into `dir`. Ownership comes from
/// the tar headers (no `copyUIDGID`), so an archive exported from the same image restores
/// with the owners the server expects.
pub(crate) async fn import<R>(
    client: &DockerClient,
    container: &str,
    dir: &str,
    tar: R,
    idle: Duration,
) -> Result<(), RuntimeError>
where
    R: AsyncRead + Send + 'static,
{
    let what = format!("upload into {dir} of container {container}");
    let start = Instant::now();
    let last_progress = Arc::new(AtomicU64::new(0));
    let progress = last_progress.clone();
    let body = ReaderStream::new(tar).map(move |chunk| {
        progress.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        chunk
    });
    let opts = UploadToContainerOptionsBuilder::default().path(dir).build();
    // bollard's timeout covers the whole request here (the response only comes after the
    // body), so it is lifted and the progress watchdog below bounds the transfer instead.
    let docker = client.patient(Duration::from_secs(7 * 24 * 3600));
    let upload = docker.upload_to_container(container, Some(opts), bollard::body_try_stream(body));
    tokio::pin!(upload);
    let tick = (idle / 4).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            r = &mut upload => return r.map_err(|e| client.error(&what, e)),
            _ = tokio::time::sleep(tick) => {
                let last = Duration::from_millis(last_progress.load(Ordering::Relaxed));
                if start.elapsed().saturating_sub(last) > idle {
                    return Err(client.timed_out(&format!("{what} (no progress)"), idle));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn paths_round_trip() {
        assert_eq!(contents_of("/data"), "/data/.");
        assert_eq!(contents_of("/data/"), "/data/.");
    }

    #[tokio::test]
    async fn idle_stream_fails_instead_of_hanging() {
        let chunks = stream::iter(vec![Ok(Bytes::from_static(b"abc"))]).chain(stream::pending());
        let mut reader = Box::pin(StreamReader::new(idle_bounded(
            Box::pin(chunks),
            Duration::from_millis(100),
        )));
        let mut buf = Vec::new();
        let err = reader.read_to_end(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(buf, b"abc");
    }

    #[tokio::test]
    async fn nothing_after_an_error() {
        let chunks = stream::iter(vec![
            Ok(Bytes::from_static(b"a")),
            Err(io::Error::other("boom")),
            Ok(Bytes::from_static(b"b")),
        ]);
        let got: Vec<_> = idle_bounded(chunks, Duration::from_secs(5)).collect().await;
        assert_eq!(got.len(), 2);
        assert!(got[1].is_err());
    }
}
