//! The fake Hetzner Cloud API itself: its set-up ([`Config`]) and run-time [`Faults`], its
//! state, the front door every `/v1` request passes (slowness, the token bucket with its
//! RateLimit-* headers and 429, auth, scripted failures), and the admin endpoints
//! `/_fake/state`, `/_fake/faults` and `/_fake/snapshots` that tests read and steer it
//! through. The resources behind the front door are in [`crate::routes`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::billing::{billed_hours, cost};
use crate::catalog;
use crate::images::{self, Image, Snapshot};
use crate::machine::{self, Machine, MachinesConfig};
use crate::routes::{error, route, Params};
use crate::time::unix_ms;

/// How the fake is set up for its whole life.
#[derive(Debug, Clone)]
pub struct Config {
    /// The one API token accepted as `Authorization: Bearer <token>`.
    pub token: String,
    /// The length of a billed hour (3600 s, shorter for time-scaled tests).
    pub hour: Duration,
    /// From create until the server is `running` (and its machine starts).
    pub boot_delay: Duration,
    /// Real processes for servers, if set.
    pub machines: Option<MachinesConfig>,
    /// How long a deleted machine gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// The snapshots held from the start, oldest first (default: [`Snapshot::default_node`]).
    pub snapshots: Vec<Snapshot>,
}

impl Config {
    pub fn new(token: &str) -> Config {
        Config {
            token: token.to_string(),
            hour: Duration::from_secs(3600),
            boot_delay: Duration::ZERO,
            machines: None,
            stop_grace: Duration::from_secs(5),
            snapshots: vec![Snapshot::default_node()],
        }
    }
}

/// What can go wrong, and the API's limits; changed at run time with `POST /_fake/faults`
/// (fields given replace the current ones, others stay).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// `[server_type, location, status]`: creates of that type there get `status`
    /// (412 `resource_unavailable`, 503 `unavailable`, 403 `resource_limit_exceeded`).
    pub unavailable: Vec<(String, String, u16)>,
    /// `[method, path prefix, status, code]`: the next matching request gets this error,
    /// once per entry, in order.
    pub script: VecDeque<(String, String, u16, String)>,
    /// create_server actions end in `error` (code `action_failed`) and the server is off.
    pub fail_actions: bool,
    /// The token bucket's size (RateLimit-Limit); setting it refills the bucket.
    pub rate_limit: u64,
    /// Tokens added per second.
    pub refill_per_sec: f64,
    /// Polls of an action that still answer `running`.
    pub action_polls: u32,
    /// The largest `per_page` honoured (the API's is 50).
    pub max_per_page: usize,
    /// Every /v1 response waits this long first.
    pub slow_ms: u64,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            unavailable: Vec::new(),
            script: VecDeque::new(),
            fail_actions: false,
            rate_limit: 3600,
            refill_per_sec: 1.0,
            action_polls: 2,
            max_per_page: 50,
            slow_ms: 0,
        }
    }
}

/// A server, live or deleted (kept for the state and its bill).
pub(crate) struct Server {
    pub id: u64,
    pub name: String,
    pub labels: Value,
    pub server_type: String,
    pub location: String,
    /// The image as the API shows it.
    pub image: Value,
    pub user_data: Option<String>,
    pub created: SystemTime,
    pub boots_at: Instant,
    pub deleted: Option<SystemTime>,
    /// Its create action ended in `error`.
    pub failed: bool,
    pub machine: Option<Machine>,
}

pub(crate) struct Action {
    pub body: Value,
    pub polls: u32,
    /// Not done before this server is running (create_server, start_server).
    pub waits_for: Option<u64>,
}

struct Inner {
    cfg: Config,
    st: Mutex<St>,
}

/// Everything that changes, under one lock.
pub(crate) struct St {
    pub faults: Faults,
    pub tokens: f64,
    pub last_refill: Option<Instant>,
    /// Ids of servers and actions (one sequence, as ids are only unique per resource).
    pub next_id: u64,
    pub servers: BTreeMap<u64, Server>,
    pub actions: HashMap<u64, Action>,
    pub images: Vec<Image>,
    /// `"METHOD /path"` → how many requests, for tests to count calls.
    pub requests: BTreeMap<String, u64>,
    /// Every accepted create body, in order.
    pub creates: Vec<Value>,
    pub rate_limited: u64,
    pub closing: bool,
}

/// A running fake (cheap to clone; all clones are the same fake).
#[derive(Clone)]
pub struct Fake {
    inner: Arc<Inner>,
}

impl Fake {
    /// A fake with default faults (no faults, 3600 requests/hour).
    pub fn new(cfg: Config) -> Fake {
        Fake::with_faults(cfg, Faults::default())
    }

    pub fn with_faults(cfg: Config, faults: Faults) -> Fake {
        let tokens = faults.rate_limit as f64;
        let images = images::initial(&cfg.snapshots, SystemTime::now());
        Fake {
            inner: Arc::new(Inner {
                cfg,
                st: Mutex::new(St {
                    faults,
                    tokens,
                    last_refill: None,
                    next_id: 0,
                    servers: BTreeMap::new(),
                    actions: HashMap::new(),
                    images,
                    requests: BTreeMap::new(),
                    creates: Vec::new(),
                    rate_limited: 0,
                    closing: false,
                }),
            }),
        }
    }

    /// The API and admin routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/_fake/state", get(admin_state))
            .route(
                "/_fake/faults",
                post(admin_set_faults).get(admin_get_faults),
            )
            .route("/_fake/snapshots", post(admin_add_snapshot))
            .fallback(api)
            .with_state(self.clone())
    }

    /// Serves on `listener` in a new task; returns the base URL (`http://addr/v1`).
    pub fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<String> {
        let addr: SocketAddr = listener.local_addr()?;
        let app = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(format!("http://{addr}/v1"))
    }

    /// Binds 127.0.0.1 on a free port and serves there: the in-process fake.
    pub async fn start(cfg: Config, faults: Faults) -> std::io::Result<(String, Fake)> {
        let fake = Fake::with_faults(cfg, faults);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = fake.serve(listener)?;
        Ok((url, fake))
    }

    /// Current faults.
    pub fn faults(&self) -> Faults {
        self.inner.st.lock().faults.clone()
    }

    /// Applies a faults patch (the JSON `POST /_fake/faults` takes): given fields replace
    /// the current ones; `tokens` sets the bucket's level directly.
    pub fn set_faults(&self, patch: &Value) -> Result<Faults, String> {
        let Some(obj) = patch.as_object() else {
            return Err("faults must be a JSON object".into());
        };
        let mut st = self.inner.st.lock();
        let mut merged = serde_json::to_value(&st.faults).map_err(|e| e.to_string())?;
        let mut tokens = None;
        for (k, v) in obj {
            if k == "tokens" {
                tokens = Some(v.as_f64().ok_or("tokens must be a number")?);
            } else {
                merged[k] = v.clone();
            }
        }
        let faults: Faults = serde_json::from_value(merged).map_err(|e| e.to_string())?;
        if faults.refill_per_sec < 0.0 || !faults.refill_per_sec.is_finite() {
            return Err("refill_per_sec must be a finite number ≥ 0".into());
        }
        if obj.contains_key("rate_limit") {
            st.tokens = faults.rate_limit as f64;
        }
        if let Some(t) = tokens {
            st.tokens = t.clamp(0.0, faults.rate_limit as f64);
        }
        st.faults = faults.clone();
        Ok(faults)
    }

    /// The state as `GET /_fake/state` shows it.
    pub fn state(&self) -> Value {
        let cfg = &self.inner.cfg;
        let st = self.inner.st.lock();
        let now = SystemTime::now();
        let mut total_hours = 0;
        let mut total_cost = 0.0;
        let servers: Vec<Value> = st
            .servers
            .values()
            .map(|s| {
                let end = unix_ms(s.deleted.unwrap_or(now));
                let hours = billed_hours(unix_ms(s.created), end, cfg.hour);
                let (hourly, monthly) = catalog::price(&s.server_type);
                let eur = cost(hours, hourly, monthly);
                total_hours += hours;
                total_cost += eur;
                json!({
                    "id": s.id, "name": s.name, "labels": s.labels,
                    "type": s.server_type, "location": s.location,
                    "status": if s.deleted.is_some() { "deleted" } else { status(s) },
                    "created_ms": unix_ms(s.created),
                    "deleted_ms": s.deleted.map(unix_ms),
                    "billed_hours": hours,
                    "hourly_eur": hourly,
                    "cost_eur": eur,
                    "machine": s.machine.as_ref().map(|m| json!({
                        "dir": m.dir, "pid": m.pid, "error": m.error, "exit": m.exit,
                        "running": m.pid.is_some() && m.exit.is_none(),
                        "files": m.files,
                    })),
                })
            })
            .collect();
        json!({
            "now_ms": unix_ms(now),
            "hour_secs": cfg.hour.as_secs_f64(),
            "boot_delay_ms": cfg.boot_delay.as_millis() as u64,
            "servers": servers,
            "creates": st.creates,
            "requests": st.requests,
            "rate_limited": st.rate_limited,
            "tokens": st.tokens,
            "total_billed_hours": total_hours,
            "total_cost_eur": total_cost,
            "images": st.images.iter().map(Image::json).collect::<Vec<_>>(),
            "faults": st.faults,
        })
    }

    /// Adds a snapshot, the newest of all (created now, or a second after the newest
    /// image); its image JSON, or why not (the id is taken).
    pub fn add_snapshot(&self, s: &Snapshot) -> Result<Value, String> {
        let mut st = self.inner.st.lock();
        if st.images.iter().any(|i| i.id == s.id) {
            return Err(format!("image {} exists", s.id));
        }
        let now = SystemTime::now();
        let created = st
            .images
            .iter()
            .map(|i| i.created + Duration::from_secs(1))
            .fold(now, SystemTime::max);
        let image = Image::snapshot(s, created);
        let out = image.json();
        st.images.push(image);
        Ok(out)
    }

    pub(crate) fn boot_delay(&self) -> Duration {
        self.inner.cfg.boot_delay
    }

    pub(crate) fn stop_grace(&self) -> Duration {
        self.inner.cfg.stop_grace
    }

    /// Ends every machine (SIGTERM to each group, SIGKILL after the grace) and boots no
    /// more: what the binary does before it exits.
    pub async fn shutdown(&self) {
        let victims: Vec<(u32, std::path::PathBuf)> = {
            let mut st = self.inner.st.lock();
            st.closing = true;
            st.servers
                .values()
                .filter_map(|s| s.machine.as_ref())
                .filter(|m| m.exit.is_none())
                .filter_map(|m| m.pid.map(|p| (p, m.dir.clone())))
                .collect()
        };
        let grace = self.inner.cfg.stop_grace;
        let tasks: Vec<_> = victims
            .into_iter()
            .map(|(pid, dir)| tokio::spawn(async move { machine::destroy(pid, &dir, grace).await }))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// After the boot delay: the server runs, and its machine starts.
    async fn boot_later(self, id: u64) {
        tokio::time::sleep(self.inner.cfg.boot_delay).await;
        let Some(mcfg) = self.inner.cfg.machines.clone() else {
            return;
        };
        let (name, user_data) = {
            let st = self.inner.st.lock();
            match st.servers.get(&id) {
                Some(s) if s.deleted.is_none() && !s.failed && !st.closing => {
                    (s.name.clone(), s.user_data.clone())
                }
                _ => return,
            }
        };
        let (m, child) = machine::boot(&mcfg, &name, id, user_data.as_deref());
        let (pid, dir) = (m.pid, m.dir.clone());
        let gone = {
            let mut st = self.inner.st.lock();
            let closing = st.closing;
            match st.servers.get_mut(&id) {
                Some(s) => {
                    s.machine = Some(m);
                    s.deleted.is_some() || closing
                }
                None => true,
            }
        };
        if let Some(mut child) = child {
            let fake = self.clone();
            tokio::spawn(async move {
                let exit = machine::describe_exit(child.wait().await);
                let mut st = fake.inner.st.lock();
                if let Some(m) = st.servers.get_mut(&id).and_then(|s| s.machine.as_mut()) {
                    m.exit = Some(exit);
                }
            });
        }
        if gone {
            if let Some(pid) = pid {
                machine::destroy(pid, &dir, self.inner.cfg.stop_grace).await;
            }
        }
    }
}

/// `initializing` until the boot delay has passed, then `running` (`off` if its create
/// action failed).
pub(crate) fn status(s: &Server) -> &'static str {
    if s.failed {
        "off"
    } else if Instant::now() >= s.boots_at {
        "running"
    } else {
        "initializing"
    }
}

/// Server `id`'s public IPv4 address: a loopback address of its own, which its machine's
/// config gets as `{ipv4}` (as a real machine knows its address).
pub fn ipv4(id: u64) -> String {
    format!("127.1.{}.{}", (id >> 8) & 255, id & 255)
}

async fn admin_state(State(fake): State<Fake>) -> Json<Value> {
    Json(fake.state())
}

async fn admin_get_faults(State(fake): State<Fake>) -> Json<Faults> {
    Json(fake.faults())
}

/// A refused admin request, in the API's error shape.
fn refused(status: u16, code: &str, message: &str) -> Response {
    let (status, body) = error(status, code, message);
    (status, Json(body)).into_response()
}

async fn admin_set_faults(State(fake): State<Fake>, body: Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refused(400, "json_error", &e.to_string()),
    };
    match fake.set_faults(&patch) {
        Ok(f) => Json(f).into_response(),
        Err(e) => refused(400, "invalid_input", &e),
    }
}

/// `POST /_fake/snapshots` with `{"id": 1002, "labels": {"warden-node": "2"}}`: a new
/// snapshot, newer than every image so far; 201 with its image JSON, 409 if the id is
/// taken.
async fn admin_add_snapshot(State(fake): State<Fake>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct New {
        id: u64,
        #[serde(default)]
        labels: BTreeMap<String, String>,
    }
    let new: New = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refused(400, "invalid_input", &e.to_string()),
    };
    let snapshot = Snapshot {
        id: new.id,
        labels: new.labels,
    };
    match fake.add_snapshot(&snapshot) {
        Ok(image) => (StatusCode::CREATED, Json(json!({ "image": image }))).into_response(),
        Err(e) => refused(409, "uniqueness_error", &e),
    }
}

/// The front door of `/v1`: slowness, request counting, the token bucket, auth, scripted
/// failures, then the route; RateLimit-* headers on every answer.
async fn api(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let slow = fake.inner.st.lock().faults.slow_ms;
    if slow > 0 {
        tokio::time::sleep(Duration::from_millis(slow)).await;
    }
    let q = Params(
        Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .map(|q| q.0)
            .unwrap_or_default(),
    );
    let path = uri.path().to_string();
    let mut boot = None;
    let mut st = fake.inner.st.lock();
    *st.requests.entry(format!("{method} {path}")).or_default() += 1;
    // The token bucket, as documented: refills evenly; headers on every response.
    let now = Instant::now();
    if let Some(last) = st.last_refill {
        let add = now.duration_since(last).as_secs_f64() * st.faults.refill_per_sec;
        st.tokens = (st.tokens + add).min(st.faults.rate_limit as f64);
    }
    st.last_refill = Some(now);
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(fake.inner.cfg.token.as_str());
    let (status, body) = if !authorized {
        error(401, "unauthorized", "unable to authenticate")
    } else if st.tokens < 1.0 {
        st.rate_limited += 1;
        let msg = format!(
            "limit of {} requests per hour reached",
            st.faults.rate_limit
        );
        error(429, "rate_limit_exceeded", &msg)
    } else {
        st.tokens -= 1.0;
        let scripted = st.faults.script.iter().position(|(m, p, _, _)| {
            m.eq_ignore_ascii_case(method.as_str()) && path.starts_with(p.as_str())
        });
        match scripted.and_then(|i| st.faults.script.remove(i)) {
            Some((_, _, s, code)) => {
                if s == 429 {
                    st.rate_limited += 1;
                }
                error(s, &code, "scripted failure")
            }
            None => route(&fake, &mut st, &method, &path, &q, &body, &mut boot),
        }
    };
    let remaining = st.tokens.floor().max(0.0) as u64;
    let refill = st.faults.refill_per_sec;
    let missing = st.faults.rate_limit.saturating_sub(remaining) as f64;
    let to_full = if refill > 0.0 {
        (missing / refill).ceil() as u64
    } else {
        0
    };
    let reset = unix_ms(SystemTime::now()) / 1000 + to_full;
    let limit = st.faults.rate_limit;
    drop(st);
    if let Some(id) = boot {
        tokio::spawn(fake.clone().boot_later(id));
    }
    let mut resp = (status, Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert("RateLimit-Limit", HeaderValue::from(limit));
    h.insert("RateLimit-Remaining", HeaderValue::from(remaining));
    h.insert("RateLimit-Reset", HeaderValue::from(reset));
    resp
}
