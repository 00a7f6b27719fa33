//! Client of the Hetzner Cloud API (https://api.hetzner.cloud/v1). Every call
//! is bounded in time and every answer in size; the RateLimit-* headers pace
//! requests; 429, 409, 423 and 503 are retried with backoff; other errors
//! surface as [`Error::Api`] with the API's own code so the provisioner can
//! fall back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::error::{Error, Result};

/// Production endpoint.
pub const DEFAULT_BASE: &str = "https://api.hetzner.cloud/v1";

/// Largest answer read (a page of 50 servers is about 200 KiB).
const MAX_BODY: usize = 8 << 20;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub base_url: String,
    pub token: String,
    /// Bound on each HTTP request.
    pub request_timeout: Duration,
    /// Retries of one call on 429/409/423/503 before giving up.
    pub max_retries: u32,
    /// First backoff step; doubles per retry.
    pub backoff: Duration,
    /// Longest single wait (also caps waits for RateLimit-Reset).
    pub max_backoff: Duration,
}

impl ClientConfig {
    pub fn new(token: impl Into<String>) -> Self {
        ClientConfig {
            base_url: DEFAULT_BASE.to_string(),
            token: token.into(),
            request_timeout: Duration::from_secs(15),
            max_retries: 5,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Last seen RateLimit-* headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimit {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Unix seconds at which the bucket is full again.
    pub reset: Option<u64>,
}

/// `{"error":{"code","message","details"}}`
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ApiError,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: serde_json::Value,
}

/// A price entry of a server type; the API sends decimals as strings.
#[derive(Debug, Clone, Deserialize)]
pub struct Price {
    pub location: String,
    pub price_hourly: Amount,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Amount {
    pub net: String,
    pub gross: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerType {
    pub id: u64,
    pub name: String,
    pub cores: u32,
    /// GB
    pub memory: f64,
    #[serde(default)]
    pub deprecated: Option<bool>,
    #[serde(default)]
    pub architecture: Option<String>,
    pub prices: Vec<Price>,
}

impl ServerType {
    /// Net hourly price in `location`, if the type is sold there.
    pub fn hourly_price(&self, location: &str) -> Option<f64> {
        self.prices
            .iter()
            .find(|p| p.location == location)
            .and_then(|p| p.price_hourly.net.parse().ok())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Location {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Datacenter {
    pub name: String,
    pub location: Location,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NamedType {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Server {
    pub id: u64,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub server_type: NamedType,
    #[serde(default)]
    pub datacenter: Option<Datacenter>,
    #[serde(default)]
    pub created: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Action {
    pub id: u64,
    pub command: String,
    /// running | success | error
    pub status: String,
    #[serde(default)]
    pub progress: u32,
    #[serde(default)]
    pub error: Option<ApiError>,
}

/// Body of `POST /servers`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateServer {
    pub name: String,
    pub server_type: String,
    /// Snapshot id (or image name).
    pub image: String,
    pub location: String,
    pub labels: BTreeMap<String, String>,
    pub user_data: String,
    pub start_after_create: bool,
}

#[derive(Debug, Deserialize)]
pub struct CreatedServer {
    pub server: Server,
    pub action: Action,
    #[serde(default)]
    pub next_actions: Vec<Action>,
}

#[derive(Debug, Deserialize)]
struct ServerTypesPage {
    server_types: Vec<ServerType>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Debug, Deserialize)]
struct ServersPage {
    servers: Vec<Server>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Debug, Deserialize)]
struct Meta {
    pagination: Pagination,
}

#[derive(Debug, Deserialize)]
struct Pagination {
    #[serde(default)]
    next_page: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ActionBody {
    action: Action,
}

#[derive(Debug, Deserialize)]
struct ImagesPage {
    images: Vec<ImageId>,
}

#[derive(Debug, Deserialize)]
struct ImageId {
    id: u64,
}

/// The API client.
pub struct Client {
    http: reqwest::Client,
    cfg: ClientConfig,
    rate: Mutex<RateLimit>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn header_u64(h: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The body of `resp`, refused past [`MAX_BODY`] bytes (the client's timeout bounds the
/// time it takes).
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>> {
    let status = resp.status().as_u16();
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(Error::Api {
                status,
                code: "response_too_large".into(),
                message: format!("the answer is larger than {MAX_BODY} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Statuses worth retrying unchanged: rate limit, conflict, locked, unavailable.
fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 409 | 423 | 429 | 503)
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("warden-forecast/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            http,
            cfg,
            rate: Mutex::new(RateLimit::default()),
        })
    }

    /// The most recent rate-limit state.
    pub async fn rate_limit(&self) -> RateLimit {
        *self.rate.lock().await
    }

    /// Time until one request token is back, when the bucket is empty. The
    /// bucket refills evenly until RateLimit-Reset, when it is full again, so
    /// one token takes (reset − now) ÷ limit (1 s for Hetzner's 3600/h).
    fn pace(&self, rl: &RateLimit) -> Option<Duration> {
        if rl.remaining != Some(0) {
            return None;
        }
        let per_token = match (rl.reset, rl.limit) {
            (Some(reset), Some(limit)) if limit > 0 => {
                let secs = reset.saturating_sub(now_unix()).max(1);
                Duration::from_secs_f64(secs as f64 / limit as f64)
            }
            _ => self.cfg.backoff,
        };
        Some(per_token.min(self.cfg.max_backoff))
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let url = format!("{}{}", self.cfg.base_url.trim_end_matches('/'), path);
        let mut attempt = 0u32;
        loop {
            let wait = self.pace(&*self.rate.lock().await);
            if let Some(w) = wait {
                tracing::debug!(?w, "rate limit bucket empty, pacing");
                tokio::time::sleep(w).await;
            }
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.cfg.token)
                .query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await?;
            let status = resp.status();
            let h = resp.headers();
            let rl = RateLimit {
                limit: header_u64(h, "ratelimit-limit"),
                remaining: header_u64(h, "ratelimit-remaining"),
                reset: header_u64(h, "ratelimit-reset"),
            };
            if rl.limit.is_some() || rl.remaining.is_some() {
                *self.rate.lock().await = rl;
            }
            if status.is_success() {
                let body = read_body(resp).await?;
                return serde_json::from_slice(&body).map_err(|e| Error::Api {
                    status: status.as_u16(),
                    code: "invalid_response".into(),
                    message: e.to_string(),
                });
            }
            let text = match read_body(resp).await {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(_) => String::new(),
            };
            let err = serde_json::from_str::<ErrorBody>(&text)
                .map(|b| b.error)
                .unwrap_or(ApiError {
                    code: format!("http_{}", status.as_u16()),
                    message: text.chars().take(200).collect(),
                    details: serde_json::Value::Null,
                });
            // a taken name will not become free by waiting
            let permanent = err.code == "uniqueness_error";
            if retryable(status) && !permanent && attempt < self.cfg.max_retries {
                let mut wait = self.cfg.backoff * 2u32.saturating_pow(attempt);
                if status == StatusCode::TOO_MANY_REQUESTS {
                    let rl = RateLimit {
                        remaining: Some(0),
                        ..rl
                    };
                    wait = wait.max(self.pace(&rl).unwrap_or_default());
                }
                let wait = wait.min(self.cfg.max_backoff);
                tracing::warn!(%status, code = %err.code, attempt, ?wait, "Hetzner API busy, retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return Err(Error::Api {
                status: status.as_u16(),
                code: err.code,
                message: err.message,
            });
        }
    }

    /// All server types with their prices, read at runtime (never hard-coded).
    pub async fn server_types(&self) -> Result<Vec<ServerType>> {
        let mut out = Vec::new();
        let mut page = 1u64;
        loop {
            let p: ServerTypesPage = self
                .request(
                    Method::GET,
                    "/server_types",
                    &[("page", page.to_string()), ("per_page", "50".into())],
                    None,
                )
                .await?;
            out.extend(p.server_types);
            match p.meta.and_then(|m| m.pagination.next_page) {
                Some(n) if n > page => page = n,
                _ => return Ok(out),
            }
        }
    }

    /// Servers matching a label selector such as `warden-pool=edge`.
    pub async fn list_servers(&self, label_selector: &str) -> Result<Vec<Server>> {
        let mut out = Vec::new();
        let mut page = 1u64;
        loop {
            let p: ServersPage = self
                .request(
                    Method::GET,
                    "/servers",
                    &[
                        ("label_selector", label_selector.to_string()),
                        ("page", page.to_string()),
                        ("per_page", "50".into()),
                    ],
                    None,
                )
                .await?;
            out.extend(p.servers);
            match p.meta.and_then(|m| m.pagination.next_page) {
                Some(n) if n > page => page = n,
                _ => return Ok(out),
            }
        }
    }

    /// The newest snapshot whose labels match `label_selector` (e.g. `warden-node=1`):
    /// its id, or None when no snapshot matches. The API sorts by creation time.
    pub async fn newest_snapshot(&self, label_selector: &str) -> Result<Option<u64>> {
        let p: ImagesPage = self
            .request(
                Method::GET,
                "/images",
                &[
                    ("type", "snapshot".into()),
                    ("label_selector", label_selector.to_string()),
                    ("sort", "created:desc".into()),
                    ("per_page", "1".into()),
                ],
                None,
            )
            .await?;
        Ok(p.images.first().map(|i| i.id))
    }

    pub async fn create_server(&self, req: &CreateServer) -> Result<CreatedServer> {
        let body = serde_json::to_value(req).map_err(|e| Error::Config(e.to_string()))?;
        self.request(Method::POST, "/servers", &[], Some(&body))
            .await
    }

    pub async fn delete_server(&self, id: u64) -> Result<Action> {
        let b: ActionBody = self
            .request(Method::DELETE, &format!("/servers/{id}"), &[], None)
            .await?;
        Ok(b.action)
    }

    pub async fn action(&self, id: u64) -> Result<Action> {
        let b: ActionBody = self
            .request(Method::GET, &format!("/actions/{id}"), &[], None)
            .await?;
        Ok(b.action)
    }

    /// Polls an action until it leaves `running`, at most `deadline` long.
    pub async fn wait_action(&self, id: u64, poll: Duration, deadline: Duration) -> Result<Action> {
        let start = Instant::now();
        loop {
            let a = self.action(id).await?;
            match a.status.as_str() {
                "success" => return Ok(a),
                "error" => {
                    let e = a.error.clone().unwrap_or(ApiError {
                        code: "action_failed".into(),
                        message: format!("action {id} failed"),
                        details: serde_json::Value::Null,
                    });
                    return Err(Error::Api {
                        status: 200,
                        code: e.code,
                        message: e.message,
                    });
                }
                _ => {}
            }
            if start.elapsed() + poll > deadline {
                return Err(Error::Exhausted(format!(
                    "action {id} still {} after {:?}",
                    a.status, deadline
                )));
            }
            tokio::time::sleep(poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use warden_hcloud_fake::{Config, Fake, Faults, Snapshot};

    fn client(base: String) -> Client {
        let mut cfg = ClientConfig::new("t");
        cfg.base_url = base;
        cfg.request_timeout = Duration::from_secs(5);
        Client::new(cfg).unwrap()
    }

    #[tokio::test]
    async fn newest_snapshot_is_the_latest_created_with_the_label() {
        let mut cfg = Config::new("t");
        // oldest first: 5 is newer than 7 although its id is smaller
        cfg.snapshots = ["7:warden-node=1", "5:warden-node=1", "9:other=1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let (url, fake) = Fake::start(cfg, Faults::default()).await.unwrap();
        let c = client(url);
        assert_eq!(c.newest_snapshot("warden-node=1").await.unwrap(), Some(5));
        assert_eq!(c.newest_snapshot("other").await.unwrap(), Some(9));
        let newer: Snapshot = "3:warden-node=1".parse().unwrap();
        fake.add_snapshot(&newer).unwrap();
        assert_eq!(c.newest_snapshot("warden-node=1").await.unwrap(), Some(3));
        assert_eq!(c.newest_snapshot("warden-node=2").await.unwrap(), None);
        match c.newest_snapshot("warden-node in (1").await {
            Err(Error::Api {
                status: 400, code, ..
            }) => assert_eq!(code, "invalid_input"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let len = MAX_BODY + 1;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&vec![b' '; len]).await;
        });
        match client(format!("http://{addr}/v1"))
            .newest_snapshot("a")
            .await
        {
            Err(Error::Api { code, .. }) => assert_eq!(code, "response_too_large"),
            other => panic!("{other:?}"),
        }
    }
}
