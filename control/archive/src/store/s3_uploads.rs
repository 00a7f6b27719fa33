//! Unfinished multipart uploads. When a process is killed in the middle of a multipart `put`,
//! S3 keeps the uploaded parts forever (and bills them) until someone aborts the upload, but
//! `object_store` can neither list nor abort uploads it did not start itself. This speaks the
//! two S3 calls the garbage collector needs, ListMultipartUploads and AbortMultipartUpload,
//! directly, against the same bucket URL `object_store` uses: presigned with rusty-s3 (its
//! SigV4 signer only, no I/O), sent with the reqwest + rustls stack `object_store` already
//! brings, answers parsed with quick-xml. Everything from the network is bounded (time, body
//! size, number of pages) and never trusted to be well-formed.

use std::time::Duration;

use jiff::Timestamp;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{StatusCode, Url};
use rusty_s3::{Credentials, Method};
use serde::Deserialize;

use super::s3::S3Config;
use super::{validate_key, Upload};
use crate::error::{ArchiveError, Result};

/// Each request (connect, send, whole body) must finish within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A page of 1000 uploads is ~0.5 MiB of XML; anything much bigger is not S3 talking.
const MAX_BODY: usize = 16 << 20;
/// Error bodies are a few hundred bytes; only the `Code` is read from them.
const MAX_ERROR_BODY: usize = 64 << 10;
/// 1000 pages of (up to) 1000 uploads each; a bucket with more is beyond cleaning in one go.
const MAX_PAGES: usize = 1000;
/// Presigned URLs are used at once; the margin only covers a slow connect.
const PRESIGN_VALIDITY: Duration = Duration::from_secs(300);

const LIST: &str = "ListMultipartUploads";
const ABORT: &str = "AbortMultipartUpload";

/// Why a multipart request failed; wrapped in [`ArchiveError::Store`].
#[derive(Debug, thiserror::Error)]
pub(super) enum MultipartError {
    #[error("{op} failed: HTTP {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        op: &'static str,
        status: StatusCode,
        /// The S3 error `Code` (`AccessDenied`, `NoSuchBucket`, ...), if the body had one.
        code: Option<String>,
    },
    /// Without the URL: a presigned one carries a (short-lived) signature.
    #[error("{op} request failed: {source}")]
    Http {
        op: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{op} response is larger than {limit} bytes")]
    TooLarge { op: &'static str, limit: usize },
    #[error("{LIST} returned a malformed response: {0}")]
    Xml(#[source] quick_xml::DeError),
    #[error("{LIST} returned more than {MAX_PAGES} pages")]
    TooManyPages,
    #[error("{LIST} said the listing is truncated but gave no marker to continue after")]
    NoProgress,
}

/// The ListMultipartUploads/AbortMultipartUpload half of [`super::S3`].
#[derive(Clone)]
pub(super) struct Multipart {
    client: reqwest::Client,
    /// The bucket's URL, ending in `/`: exactly where `object_store` puts the objects.
    bucket_url: Url,
    region: String,
    credentials: Credentials,
}

// rusty-s3's Credentials already hide the secret; spelled out so that stays true.
impl std::fmt::Debug for Multipart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multipart")
            .field("bucket_url", &self.bucket_url.as_str())
            .field("access_key", &self.credentials.key())
            .finish_non_exhaustive()
    }
}

/// What S3's SigV4 canonical URI leaves unencoded in a key: the unreserved characters and
/// `/` (rusty-s3 signs the path exactly as sent).
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The bucket's URL as `object_store` 0.12 builds it from the same config: path style
/// appends the bucket to the endpoint, virtual-hosted style takes the endpoint as the bucket's
/// own (`https://BUCKET.host`).
fn bucket_url(config: &S3Config) -> Result<Url> {
    let bad =
        |why: String| ArchiveError::Config(format!("S3 endpoint `{}`: {why}", config.endpoint));
    let endpoint = config.endpoint.trim_end_matches('/');
    let url = if config.path_style {
        let bucket = utf8_percent_encode(&config.bucket, KEY_ENCODE);
        format!("{endpoint}/{bucket}/")
    } else {
        format!("{endpoint}/")
    };
    let url = Url::parse(&url).map_err(|e| bad(e.to_string()))?;
    // rusty-s3's signer panics on anything else
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("must be an http:// or https:// URL with a host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment".into()));
    }
    Ok(url)
}

impl Multipart {
    pub(super) fn new(config: &S3Config) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            // a presigned URL is only valid for the host it was signed for
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ArchiveError::Config(format!("S3 HTTP client: {e}")))?;
        Ok(Multipart {
            client,
            bucket_url: bucket_url(config)?,
            region: config.region.clone(),
            credentials: Credentials::new(&config.access_key, &config.secret_key),
        })
    }

    /// `key`'s URL (unsigned). Only for keys `validate_key` accepts: no `..`, no leading `/`.
    fn object_url(&self, key: &str) -> Url {
        let mut url = self.bucket_url.clone();
        let path = format!(
            "{}{}",
            self.bucket_url.path(),
            utf8_percent_encode(key, KEY_ENCODE)
        );
        url.set_path(&path);
        url
    }

    /// All unfinished uploads whose key starts with `s3_prefix`, sorted by key (then start
    /// time, then id).
    pub(super) async fn list(&self, s3_prefix: &str) -> Result<Vec<Upload>, MultipartError> {
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("uploads", ""), ("prefix", s3_prefix)];
            if let Some((key, id)) = &marker {
                query.push(("key-marker", key.as_str()));
                query.push(("upload-id-marker", id.as_str()));
            }
            let url = self.presign(Method::Get, self.bucket_url.clone(), &query);
            let resp = self.send(LIST, self.client.get(url)).await?;
            let body = read_body(LIST, resp, MAX_BODY).await?;
            let page = parse_page(&body)?;
            let next = next_marker(&page, marker.as_ref())?;
            // a store that ignores `prefix` must not hand the collector other keys' uploads
            out.extend(
                page.uploads
                    .into_iter()
                    .filter(|u| u.key.starts_with(s3_prefix)),
            );
            match next {
                None => {
                    out.sort_by(|a, b| {
                        (&a.key, a.started_unix_ms, &a.id).cmp(&(&b.key, b.started_unix_ms, &b.id))
                    });
                    out.dedup_by(|a, b| a.key == b.key && a.id == b.id);
                    return Ok(out);
                }
                Some(m) => marker = Some(m),
            }
        }
        Err(MultipartError::TooManyPages)
    }

    /// Aborts `upload`; one that no longer exists (`NoSuchUpload`) counts as aborted.
    pub(super) async fn abort(&self, upload: &Upload) -> Result<()> {
        let key = upload.key.as_str();
        // the key comes from a listing: keep it from leaving the bucket in the URL
        validate_key(key)?;
        let url = self.presign(
            Method::Delete,
            self.object_url(key),
            &[("uploadId", upload.id.as_str())],
        );
        let store_err = |e: MultipartError| ArchiveError::Store {
            key: key.to_string(),
            source: Box::new(e),
        };
        match self.send(ABORT, self.client.delete(url)).await {
            Ok(_) => Ok(()),
            Err(MultipartError::Status {
                status: StatusCode::NOT_FOUND,
                code: Some(code),
                ..
            }) if code == "NoSuchUpload" => Ok(()),
            Err(e) => Err(store_err(e)),
        }
    }

    fn presign(&self, method: Method, url: Url, query: &[(&str, &str)]) -> Url {
        rusty_s3::signing::sign(
            &Timestamp::now(),
            method,
            url,
            self.credentials.key(),
            self.credentials.secret(),
            self.credentials.token(),
            &self.region,
            PRESIGN_VALIDITY.as_secs(),
            query.iter().copied(),
            std::iter::empty(),
        )
    }

    /// Sends the request; a non-2xx answer becomes [`MultipartError::Status`] with the S3
    /// error code from its body.
    async fn send(
        &self,
        op: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, MultipartError> {
        let resp = req.send().await.map_err(|e| MultipartError::Http {
            op,
            source: e.without_url(),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        // the code is a nicety: a body that cannot be read still leaves the status
        let code = read_body(op, resp, MAX_ERROR_BODY)
            .await
            .ok()
            .and_then(|b| error_code(&b));
        Err(MultipartError::Status { op, status, code })
    }
}

/// Reads the body a chunk at a time, giving up as soon as it exceeds `limit`.
async fn read_body(
    op: &'static str,
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, MultipartError> {
    let too_large = MultipartError::TooLarge { op, limit };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| MultipartError::Http {
        op,
        source: e.without_url(),
    })? {
        if body.len() + chunk.len() > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// One page of ListMultipartUploads, as far as the collector cares.
#[derive(Debug, PartialEq, Eq)]
struct Page {
    uploads: Vec<Upload>,
    truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawPage {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<RawUpload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawUpload {
    key: String,
    upload_id: String,
    #[serde(default)]
    initiated: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawError {
    #[serde(default)]
    code: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn parse_page(xml: &[u8]) -> Result<Page, MultipartError> {
    let text = std::str::from_utf8(xml)
        .map_err(|e| MultipartError::Xml(quick_xml::DeError::Custom(e.to_string())))?;
    let raw: RawPage = quick_xml::de::from_str(text).map_err(MultipartError::Xml)?;
    Ok(Page {
        uploads: raw
            .uploads
            .into_iter()
            .map(|u| Upload {
                started_unix_ms: u.initiated.as_deref().and_then(parse_initiated),
                key: u.key,
                id: u.upload_id,
            })
            .collect(),
        truncated: raw.is_truncated,
        next_key_marker: non_empty(raw.next_key_marker),
        next_upload_id_marker: non_empty(raw.next_upload_id_marker),
    })
}

/// Where the next page starts, `None` when this was the last one. Servers that omit the
/// `Next*Marker`s continue after the page's last upload; a marker that does not move would
/// loop forever and is an error.
fn next_marker(
    page: &Page,
    current: Option<&(String, String)>,
) -> Result<Option<(String, String)>, MultipartError> {
    if !page.truncated {
        return Ok(None);
    }
    let last = page.uploads.last();
    let key = page
        .next_key_marker
        .clone()
        .or_else(|| last.map(|u| u.key.clone()))
        .ok_or(MultipartError::NoProgress)?;
    let id = page
        .next_upload_id_marker
        .clone()
        .or_else(|| last.map(|u| u.id.clone()))
        .unwrap_or_default();
    let next = (key, id);
    if current == Some(&next) {
        return Err(MultipartError::NoProgress);
    }
    Ok(Some(next))
}

/// The `Code` of an S3 `<Error>` body, if it is one.
fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let raw: RawError = quick_xml::de::from_str(text).ok()?;
    non_empty(raw.code.map(|c| c.trim().to_string()))
}

/// `2026-12-01T04:00:00.000Z` → unix ms; `None` for anything else or before 1970. Some
/// S3-compatible stores leave out the `Z`: a time without an offset is taken as UTC.
fn parse_initiated(s: &str) -> Option<u64> {
    let s = s.trim();
    let ts = s
        .parse::<Timestamp>()
        .or_else(|_| format!("{s}Z").parse::<Timestamp>())
        .ok()?;
    u64::try_from(ts.as_millisecond()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(key: &str, id: &str, started: Option<u64>) -> Upload {
        Upload {
            key: key.into(),
            id: id.into(),
            started_unix_ms: started,
        }
    }

    // 2026-12-01T04:00:00Z
    const DEC_1: u64 = 1_796_097_600_000;

    #[test]
    fn parses_a_truncated_page_with_a_garbage_date() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>warden</Bucket>
  <KeyMarker></KeyMarker>
  <UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>lobby/data.tar.zst</NextKeyMarker>
  <NextUploadIdMarker>id-2</NextUploadIdMarker>
  <Prefix>lobby/</Prefix>
  <MaxUploads>2</MaxUploads>
  <IsTruncated>true</IsTruncated>
  <Upload>
    <Key>hub/data.tar.zst</Key>
    <UploadId>id-1</UploadId>
    <Initiator><ID>arn:aws:iam::1:user/u</ID><DisplayName>u</DisplayName></Initiator>
    <Owner><ID>o</ID><DisplayName>o</DisplayName></Owner>
    <StorageClass>STANDARD</StorageClass>
    <Initiated>2026-12-01T04:00:00.000Z</Initiated>
  </Upload>
  <Upload>
    <Key>lobby/data.tar.zst</Key>
    <UploadId>id-2</UploadId>
    <Initiated>yesterday-ish</Initiated>
  </Upload>
</ListMultipartUploadsResult>"#;
        let page = parse_page(xml.as_bytes()).unwrap();
        assert_eq!(
            page,
            Page {
                uploads: vec![
                    upload("hub/data.tar.zst", "id-1", Some(DEC_1)),
                    upload("lobby/data.tar.zst", "id-2", None),
                ],
                truncated: true,
                next_key_marker: Some("lobby/data.tar.zst".into()),
                next_upload_id_marker: Some("id-2".into()),
            }
        );
        assert_eq!(
            next_marker(&page, None).unwrap(),
            Some(("lobby/data.tar.zst".into(), "id-2".into()))
        );
        // the same marker again would loop forever
        let again = ("lobby/data.tar.zst".to_string(), "id-2".to_string());
        assert!(matches!(
            next_marker(&page, Some(&again)),
            Err(MultipartError::NoProgress)
        ));
    }

    #[test]
    fn last_page_empty_page_and_missing_markers() {
        let last = parse_page(
            b"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\
              <Upload><Key>a/b</Key><UploadId>x</UploadId></Upload>\
              </ListMultipartUploadsResult>",
        )
        .unwrap();
        assert_eq!(last.uploads, [upload("a/b", "x", None)]);
        assert_eq!(next_marker(&last, None).unwrap(), None);

        let empty = parse_page(
            b"<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated>\
              </ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(empty.uploads.is_empty() && !empty.truncated);

        // truncated without Next*Marker: continue after the last upload of the page
        let no_markers = parse_page(
            b"<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>\
              <NextKeyMarker/>\
              <Upload><Key>a/b</Key><UploadId>x</UploadId></Upload>\
              </ListMultipartUploadsResult>",
        )
        .unwrap();
        assert_eq!(
            next_marker(&no_markers, None).unwrap(),
            Some(("a/b".into(), "x".into()))
        );
        // ... and with nothing at all to continue after, stop with an error
        let stuck = parse_page(
            b"<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>\
              </ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(matches!(
            next_marker(&stuck, None),
            Err(MultipartError::NoProgress)
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"not xml at all",
            b"<ListMultipartUploadsResult><Upload><Key>a</Key></Upload>",
            b"<ListMultipartUploadsResult><IsTruncated>maybe</IsTruncated></ListMultipartUploadsResult>",
            b"<ListMultipartUploadsResult><Upload><UploadId>x</UploadId></Upload></ListMultipartUploadsResult>",
            b"\xff\xfe<",
        ] {
            assert!(parse_page(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn error_codes() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message>
<UploadId>x</UploadId><RequestId>r</RequestId></Error>"#;
        assert_eq!(error_code(body).as_deref(), Some("NoSuchUpload"));
        assert_eq!(error_code(b""), None);
        assert_eq!(error_code(b"<html>502 Bad Gateway</html>"), None);
        assert_eq!(error_code(b"<Error><Code></Code></Error>"), None);
        let e = MultipartError::Status {
            op: ABORT,
            status: StatusCode::FORBIDDEN,
            code: Some("AccessDenied".into()),
        };
        assert_eq!(
            e.to_string(),
            "AbortMultipartUpload failed: HTTP 403 Forbidden (AccessDenied)"
        );
    }

    fn multipart(endpoint: &str, path_style: bool) -> Result<Multipart> {
        let mut cfg = S3Config::new(endpoint, "eu-central", "warden", "k", "sekrit-value");
        cfg.path_style = path_style;
        Multipart::new(&cfg)
    }

    #[test]
    fn urls_match_object_store() {
        let path = multipart("https://fsn1.example.com/", true).unwrap();
        assert_eq!(path.bucket_url.as_str(), "https://fsn1.example.com/warden/");
        assert_eq!(
            path.object_url("servers/Wörld Édit/a+b&c~d.tar.zst")
                .as_str(),
            "https://fsn1.example.com/warden/servers/W%C3%B6rld%20%C3%89dit/a%2Bb%26c~d.tar.zst"
        );
        // virtual-hosted: the endpoint already is the bucket's (object_store 0.12 semantics)
        let vhost = multipart("https://warden.fsn1.example.com", false).unwrap();
        assert_eq!(
            vhost.object_url("lobby/data.tar.zst").as_str(),
            "https://warden.fsn1.example.com/lobby/data.tar.zst"
        );
        let ip = multipart("http://127.0.0.1:9000/base", false).unwrap();
        assert_eq!(ip.bucket_url.as_str(), "http://127.0.0.1:9000/base/");
        // the signed URL keeps the path and adds the query
        let signed = path.presign(
            Method::Delete,
            path.object_url("a b/c"),
            &[("uploadId", "x/y")],
        );
        assert_eq!(signed.path(), "/warden/a%20b/c");
        assert!(signed
            .query_pairs()
            .any(|(k, v)| k == "uploadId" && v == "x/y"));
        assert!(signed.query_pairs().any(|(k, _)| k == "X-Amz-Signature"));
        assert!(
            !signed.as_str().contains("s&"),
            "secret leaked into {signed}"
        );
        for bad in [
            "",
            "fsn1.example.com",
            "ftp://h",
            "file:///x",
            "https://h/?a=b",
        ] {
            assert!(
                matches!(multipart(bad, true), Err(ArchiveError::Config(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn network_errors_name_the_operation_but_not_the_signed_url() {
        // nothing listens on port 1
        let m = multipart("http://127.0.0.1:1", true).unwrap();
        let e = m.list("").await.unwrap_err();
        assert!(matches!(e, MultipartError::Http { op: LIST, .. }), "{e:?}");
        let msg = format!("{e} {e:?}");
        assert!(!msg.contains("X-Amz-Signature"), "{msg}");
        let up = upload("lobby/data.tar.zst", "x", None);
        let msg = m.abort(&up).await.unwrap_err().to_string();
        assert!(
            msg.contains("AbortMultipartUpload") && msg.contains("lobby/data.tar.zst"),
            "{msg}"
        );
        assert!(!msg.contains("X-Amz-Signature"), "{msg}");
    }

    #[test]
    fn initiated_dates() {
        assert_eq!(parse_initiated("2026-12-01T04:00:00.000Z"), Some(DEC_1));
        assert_eq!(parse_initiated("2026-12-01T04:00:00Z"), Some(DEC_1));
        assert_eq!(parse_initiated("2026-12-01T04:00:00.000"), Some(DEC_1));
        assert_eq!(parse_initiated(" 2026-12-01T05:00:00+01:00 "), Some(DEC_1));
        assert_eq!(parse_initiated("1969-12-31T23:59:59Z"), None);
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "Tue, 01 Dec 2026 04:00:00 GMT",
        ] {
            assert_eq!(parse_initiated(bad), None, "{bad}");
        }
    }
}
