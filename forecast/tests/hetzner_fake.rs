//! The provisioner against a local fake of the Hetzner Cloud API: the
//! documented endpoints, bodies, pagination, RateLimit-* headers and error
//! shapes ({"error":{"code","message","details"}}), bound to 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use warden_forecast::hetzner::api::{Client, ClientConfig};
use warden_forecast::hetzner::provision::{Provisioner, ProvisionerConfig};
use warden_forecast::Error;

const TOKEN: &str = "test-token";

#[derive(Default)]
struct Fake {
    servers: BTreeMap<u64, Value>,
    actions: HashMap<u64, (Value, u32)>,
    next_id: u64,
    /// (type, location) → HTTP status the create gets (412 or 503)
    unavailable: HashMap<(String, String), u16>,
    /// scripted failures: (method, path prefix, status, code)
    script: VecDeque<(String, String, u16, String)>,
    /// polls before an action succeeds
    action_polls: u32,
    fail_actions: bool,
    page_size: usize,
    rate_limit: u64,
    tokens: f64,
    refill_per_sec: f64,
    last_refill: Option<Instant>,
    requests: Vec<(String, String)>,
    creates: Vec<Value>,
    rate_limited: u32,
    slow: Option<Duration>,
}

type Shared = Arc<Mutex<Fake>>;

fn unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn error(status: u16, code: &str, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(status).unwrap(),
        json!({"error": {"code": code, "message": message, "details": {}}}),
    )
}

fn server_types() -> Vec<Value> {
    let t =
        |id: u64, name: &str, cores: u32, mem: f64, prices: &[(&str, &str)], deprecated: bool| {
            json!({
                "id": id, "name": name, "description": name.to_uppercase(), "cores": cores,
                "memory": mem, "disk": 80, "deprecated": deprecated, "storage_type": "local",
                "cpu_type": "shared", "architecture": "x86",
                "prices": prices.iter().map(|(loc, p)| json!({
                    "location": loc,
                    "price_hourly": {"net": p, "gross": format!("{p}0000")},
                    "price_monthly": {"net": "1.0000000000", "gross": "1.1900000000"},
                    "included_traffic": 21990232555520u64,
                    "price_per_tb_traffic": {"net": "1.0000000000", "gross": "1.1900000000"}
                })).collect::<Vec<_>>()
            })
        };
    vec![
        t(
            22,
            "cx22",
            2,
            4.0,
            &[("fsn1", "0.0060000000"), ("nbg1", "0.0060000000")],
            false,
        ),
        t(
            32,
            "cx32",
            4,
            8.0,
            &[("fsn1", "0.0110000000"), ("nbg1", "0.0110000000")],
            false,
        ),
        // cheapest per GB among ≥ 16 GB, but not sold in hel1
        t(
            42,
            "cx42",
            8,
            16.0,
            &[("fsn1", "0.0260000000"), ("nbg1", "0.0260000000")],
            false,
        ),
        t(
            52,
            "cx52",
            16,
            32.0,
            &[
                ("fsn1", "0.0540000000"),
                ("nbg1", "0.0540000000"),
                ("hel1", "0.0540000000"),
            ],
            false,
        ),
        t(
            133,
            "ccx33",
            8,
            32.0,
            &[
                ("fsn1", "0.0769000000"),
                ("nbg1", "0.0769000000"),
                ("hel1", "0.0769000000"),
            ],
            false,
        ),
        t(91, "cx41", 4, 16.0, &[("fsn1", "0.0010000000")], true),
    ]
}

fn paginate(items: Vec<Value>, q: &HashMap<String, String>, size_cap: usize, key: &str) -> Value {
    let per_page = q
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, size_cap);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    json!({
        key: slice,
        "meta": {"pagination": {
            "page": page, "per_page": per_page,
            "previous_page": if page > 1 { json!(page - 1) } else { Value::Null },
            "next_page": if page < last { json!(page + 1) } else { Value::Null },
            "last_page": last, "total_entries": total
        }}
    })
}

fn new_action(f: &mut Fake, command: &str, server: u64) -> Value {
    f.next_id += 1;
    let a = json!({
        "id": f.next_id, "command": command, "status": "running", "progress": 0,
        "started": "2025-01-01T00:00:00+00:00", "finished": null,
        "resources": [{"id": server, "type": "server"}], "error": null
    });
    f.actions.insert(f.next_id, (a.clone(), 0));
    a
}

fn matches_selector(labels: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels.get(k).and_then(Value::as_str) == Some(v),
            None => labels.get(term).is_some(),
        })
}

/// Shared front door: auth, rate limit, scripted failures, then the route.
async fn handle(
    State(st): State<Shared>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Option<Json<Value>>,
    id: Option<u64>,
) -> Response {
    let slow = st.lock().slow;
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    let mut f = st.lock();
    let path = uri.path().to_string();
    f.requests.push((method.to_string(), path.clone()));
    // token bucket, as documented: refills evenly, headers on every response
    let now = Instant::now();
    if let Some(last) = f.last_refill {
        let add = now.duration_since(last).as_secs_f64() * f.refill_per_sec;
        f.tokens = (f.tokens + add).min(f.rate_limit as f64);
    }
    f.last_refill = Some(now);
    let (status, body) = if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        error(401, "unauthorized", "unable to authenticate")
    } else if f.tokens < 1.0 {
        f.rate_limited += 1;
        error(
            429,
            "rate_limit_exceeded",
            "limit of 3600 requests per hour reached",
        )
    } else {
        f.tokens -= 1.0;
        let scripted = f
            .script
            .iter()
            .position(|(m, p, _, _)| *m == method.as_str() && path.starts_with(p.as_str()));
        if let Some(i) = scripted {
            let (_, _, s, code) = f.script.remove(i).unwrap();
            error(s, &code, "scripted failure")
        } else {
            route(&mut f, &method, &path, &q, body.map(|b| b.0), id)
        }
    };
    let mut resp = (status, Json(body)).into_response();
    let h = resp.headers_mut();
    let remaining = f.tokens.floor().max(0.0) as u64;
    let reset = unix() + ((f.rate_limit - remaining) as f64 / f.refill_per_sec).ceil() as u64;
    h.insert("RateLimit-Limit", HeaderValue::from(f.rate_limit));
    h.insert("RateLimit-Remaining", HeaderValue::from(remaining));
    h.insert("RateLimit-Reset", HeaderValue::from(reset));
    resp
}

fn route(
    f: &mut Fake,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    body: Option<Value>,
    id: Option<u64>,
) -> (StatusCode, Value) {
    match (method.as_str(), path, id) {
        ("GET", "/v1/server_types", _) => (
            StatusCode::OK,
            paginate(server_types(), q, f.page_size, "server_types"),
        ),
        ("GET", "/v1/servers", _) => {
            let sel = q.get("label_selector").cloned().unwrap_or_default();
            let items: Vec<Value> = f
                .servers
                .values()
                .filter(|s| matches_selector(&s["labels"], &sel))
                .cloned()
                .collect();
            (StatusCode::OK, paginate(items, q, f.page_size, "servers"))
        }
        ("POST", "/v1/servers", _) => {
            let Some(b) = body else {
                return error(400, "json_error", "invalid JSON");
            };
            let (Some(name), Some(ty), Some(image)) = (
                b["name"].as_str(),
                b["server_type"].as_str(),
                b["image"].as_str(),
            ) else {
                return error(
                    400,
                    "invalid_input",
                    "name, server_type and image are required",
                );
            };
            let loc = b["location"].as_str().unwrap_or("fsn1").to_string();
            let types = server_types();
            let Some(t) = types.iter().find(|t| t["name"] == ty) else {
                return error(400, "invalid_input", "unknown server_type");
            };
            if f.servers.values().any(|s| s["name"] == name) {
                return error(409, "uniqueness_error", "server name is already used");
            }
            if let Some(s) = f.unavailable.get(&(ty.to_string(), loc.clone())) {
                let code = if *s == 412 {
                    "resource_unavailable"
                } else {
                    "unavailable"
                };
                return error(*s, code, "server type not available in location");
            }
            if !t["prices"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["location"] == loc.as_str())
            {
                return error(
                    412,
                    "resource_unavailable",
                    "server type not sold in location",
                );
            }
            f.creates.push(b.clone());
            f.next_id += 1;
            let sid = f.next_id;
            let server = json!({
                "id": sid, "name": name, "status": "initializing",
                "created": "2025-01-01T00:00:00+00:00",
                "labels": b.get("labels").cloned().unwrap_or(json!({})),
                "server_type": t, "image": {"id": image},
                "datacenter": {"name": format!("{loc}-dc1"), "location": {"name": loc}},
                "public_net": {"ipv4": {"ip": format!("10.0.0.{sid}")}}
            });
            f.servers.insert(sid, server.clone());
            let action = new_action(f, "create_server", sid);
            let next = new_action(f, "start_server", sid);
            (
                StatusCode::CREATED,
                json!({"server": server, "action": action, "next_actions": [next], "root_password": null}),
            )
        }
        ("DELETE", _, Some(sid)) if path.starts_with("/v1/servers/") => {
            if f.servers.remove(&sid).is_none() {
                return error(404, "not_found", "server not found");
            }
            let a = new_action(f, "delete_server", sid);
            (StatusCode::OK, json!({"action": a}))
        }
        ("GET", _, Some(aid)) if path.starts_with("/v1/actions/") => {
            let polls = f.action_polls;
            let fail = f.fail_actions;
            let Some((a, n)) = f.actions.get_mut(&aid) else {
                return error(404, "not_found", "action not found");
            };
            *n += 1;
            if *n > polls {
                if fail && a["command"] == "create_server" {
                    a["status"] = json!("error");
                    a["error"] = json!({"code": "action_failed", "message": "boot failed"});
                } else {
                    a["status"] = json!("success");
                    a["progress"] = json!(100);
                }
            } else {
                a["progress"] = json!(50);
            }
            (StatusCode::OK, json!({"action": a.clone()}))
        }
        _ => error(404, "not_found", "no such endpoint"),
    }
}

async fn start(fake: Fake) -> (String, Shared) {
    let st: Shared = Arc::new(Mutex::new(fake));
    let app = Router::new()
        .route(
            "/v1/server_types",
            get(|s, m, u, h, q| handle(s, m, u, h, q, None, None)),
        )
        .route(
            "/v1/servers",
            get(|s, m, u, h, q| handle(s, m, u, h, q, None, None))
                .post(|s, m, u, h, q, b: Json<Value>| handle(s, m, u, h, q, Some(b), None)),
        )
        .route(
            "/v1/servers/{id}",
            axum::routing::delete(|s, m, u, h, q, Path(id): Path<u64>| {
                handle(s, m, u, h, q, None, Some(id))
            }),
        )
        .route(
            "/v1/actions/{id}",
            get(|s, m, u, h, q, Path(id): Path<u64>| handle(s, m, u, h, q, None, Some(id))),
        )
        .with_state(st.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/v1"), st)
}

fn fake() -> Fake {
    Fake {
        action_polls: 2,
        page_size: 2,
        rate_limit: 3600,
        tokens: 3600.0,
        refill_per_sec: 1.0,
        ..Default::default()
    }
}

fn client(base: &str, token: &str) -> Client {
    Client::new(ClientConfig {
        base_url: base.to_string(),
        token: token.to_string(),
        request_timeout: Duration::from_secs(2),
        max_retries: 4,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
    })
    .unwrap()
}

fn pcfg(dry_run: bool) -> ProvisionerConfig {
    ProvisionerConfig {
        pool: "edge".into(),
        image: "123456".into(),
        user_data: "#cloud-config\nruncmd: [\"systemctl start warden-node\"]\n".into(),
        locations: vec!["hel1".into(), "fsn1".into(), "nbg1".into()],
        server_types: vec![],
        min_memory_gb: 16.0,
        labels: BTreeMap::from([("role".to_string(), "game-node".to_string())]),
        name_prefix: "warden-node".into(),
        dry_run,
        action_poll: Duration::from_millis(5),
        action_deadline: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn candidates_come_from_server_types_with_pagination() {
    let (base, st) = start(fake()).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(false));
    let c = p.candidates().await.unwrap();
    // cx42 is cheapest per GB; hel1 does not sell it; deprecated cx41 ignored
    assert_eq!(
        (c[0].server_type.as_str(), c[0].location.as_str()),
        ("cx42", "fsn1")
    );
    assert_eq!(c[1].location, "nbg1");
    assert_eq!(c[2].server_type, "cx52");
    assert_eq!(c[2].location, "hel1");
    assert!((c[0].hourly_price - 0.026).abs() < 1e-12);
    assert!(c
        .iter()
        .all(|x| x.server_type != "cx41" && x.memory_gb >= 16.0));
    // 6 types at 2 per page → 3 pages fetched
    let pages = st
        .lock()
        .requests
        .iter()
        .filter(|r| r.1 == "/v1/server_types")
        .count();
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn create_list_delete_roundtrip() {
    let (base, st) = start(fake()).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(false));
    let made = p.scale_out(2).await.unwrap();
    assert_eq!(made.len(), 2);
    assert!(made
        .iter()
        .all(|m| m.id.is_some() && m.candidate.server_type == "cx42"));
    {
        let f = st.lock();
        let b = &f.creates[0];
        assert_eq!(b["image"], "123456");
        assert_eq!(b["labels"]["warden-pool"], "edge");
        assert_eq!(b["labels"]["role"], "game-node");
        assert!(b["user_data"]
            .as_str()
            .unwrap()
            .starts_with("#cloud-config"));
        // create_server and start_server were both polled until success
        // (3 polls each with action_polls = 2, for two servers)
        assert_eq!(
            f.requests
                .iter()
                .filter(|r| r.1.starts_with("/v1/actions/"))
                .count(),
            12
        );
    }
    let listed = p.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|s| s.labels.get("warden-pool").map(String::as_str) == Some("edge")));
    for s in &listed {
        p.scale_in(s.id).await.unwrap();
    }
    assert!(p.list().await.unwrap().is_empty());
    // deleting again is a 404 with the API's error body
    match p.scale_in(listed[0].id).await {
        Err(Error::Api {
            status: 404, code, ..
        }) => assert_eq!(code, "not_found"),
        other => panic!("expected not_found, got {other:?}"),
    }
}

#[tokio::test]
async fn falls_back_to_another_location_on_412_and_503() {
    let mut f = fake();
    f.unavailable.insert(("cx42".into(), "fsn1".into()), 412);
    f.unavailable.insert(("cx42".into(), "nbg1".into()), 503);
    let (base, st) = start(f).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(false));
    let made = p.scale_out(1).await.unwrap();
    assert_eq!(made[0].candidate.server_type, "cx52");
    assert_eq!(made[0].candidate.location, "hel1");
    let d = p.decisions();
    assert!(d.iter().any(|l| l.contains("cx42 in fsn1 unavailable")));
    assert!(d.iter().any(|l| l.contains("cx42 in nbg1 unavailable")));
    // the 503 was retried before falling back
    let posts = st.lock().requests.iter().filter(|r| r.0 == "POST").count();
    assert_eq!(posts, 1 + 5 + 1);
}

#[tokio::test]
async fn retries_429_423_409_503_with_backoff() {
    let mut f = fake();
    for (s, code) in [
        (429, "rate_limit_exceeded"),
        (423, "locked"),
        (409, "conflict"),
        (503, "unavailable"),
    ] {
        f.script
            .push_back(("POST".into(), "/v1/servers".into(), s, code.into()));
    }
    let (base, st) = start(f).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(false));
    let started = Instant::now();
    let made = p.scale_out(1).await.unwrap();
    assert_eq!(made[0].candidate.location, "fsn1");
    // 10 + 20 + 40 + 80 ms of backoff at least
    assert!(started.elapsed() >= Duration::from_millis(150));
    let posts = st.lock().requests.iter().filter(|r| r.0 == "POST").count();
    assert_eq!(posts, 5);
}

#[tokio::test]
async fn uniqueness_error_is_not_retried() {
    let mut f = fake();
    f.script.push_back((
        "POST".into(),
        "/v1/servers".into(),
        409,
        "uniqueness_error".into(),
    ));
    let (base, _st) = start(f).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(false));
    match p.scale_out(1).await {
        Err(Error::Api {
            status: 409, code, ..
        }) => assert_eq!(code, "uniqueness_error"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn rate_limit_headers_pace_requests() {
    let mut f = fake();
    f.rate_limit = 4;
    f.tokens = 4.0;
    f.refill_per_sec = 20.0;
    let (base, st) = start(f).await;
    let c = client(&base, TOKEN);
    for _ in 0..12 {
        c.server_types().await.unwrap();
    }
    let rl = c.rate_limit().await;
    assert_eq!(rl.limit, Some(4));
    assert!(rl.reset.is_some() && rl.remaining.is_some());
    // the client waited for tokens instead of running into 429s (a few may
    // still happen at the edge, and are retried)
    let limited = st.lock().rate_limited;
    assert!(limited <= 3, "{limited} requests hit 429");
}

#[tokio::test]
async fn wrong_token_is_unauthorized() {
    let (base, _st) = start(fake()).await;
    let c = client(&base, "nope");
    match c.server_types().await {
        Err(Error::Api {
            status: 401,
            code,
            message,
        }) => {
            assert_eq!(code, "unauthorized");
            assert!(!message.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dry_run_logs_but_changes_nothing() {
    let (base, st) = start(fake()).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(true));
    let made = p.scale_out(3).await.unwrap();
    assert_eq!(made.len(), 3);
    assert!(made.iter().all(|m| m.id.is_none()));
    p.scale_in(77).await.unwrap();
    let f = st.lock();
    assert!(f.requests.iter().all(|r| r.0 == "GET"));
    let d = p.decisions();
    assert_eq!(d.len(), 4);
    assert!(d[0].starts_with("would create") && d[3] == "would delete server 77");
}

#[tokio::test]
async fn failed_create_action_cleans_up() {
    let mut f = fake();
    f.fail_actions = true;
    let (base, st) = start(f).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(false));
    assert!(
        matches!(p.scale_out(1).await, Err(Error::Api { code, .. }) if code == "action_failed")
    );
    assert!(st.lock().servers.is_empty());
}

#[tokio::test]
async fn calls_are_bounded_in_time() {
    let mut f = fake();
    f.slow = Some(Duration::from_secs(5));
    let (base, _st) = start(f).await;
    let mut cfg = ClientConfig::new(TOKEN);
    cfg.base_url = base;
    cfg.request_timeout = Duration::from_millis(200);
    let c = Client::new(cfg).unwrap();
    let t = Instant::now();
    assert!(matches!(c.server_types().await, Err(Error::Http(_))));
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn action_wait_has_a_deadline() {
    let mut f = fake();
    f.action_polls = 1_000_000;
    let (base, _st) = start(f).await;
    let mut cfg = pcfg(false);
    cfg.action_deadline = Duration::from_millis(100);
    let p = Provisioner::new(client(&base, TOKEN), cfg);
    assert!(matches!(p.scale_out(1).await, Err(Error::Exhausted(_))));
}
