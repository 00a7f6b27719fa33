//! The provisioner against the local fake of the Hetzner Cloud API (the
//! `warden-hcloud-fake` crate, in process on 127.0.0.1:0): the documented
//! endpoints, bodies, pagination, RateLimit-* headers and error shapes
//! ({"error":{"code","message","details"}}). Fallbacks through (type,
//! location), backoff on 429/423/409/503, failed creates cleaned up, dry runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use warden_forecast::hetzner::api::{Client, ClientConfig};
use warden_forecast::hetzner::provision::{NodeImage, Provisioner, ProvisionerConfig};
use warden_forecast::Error;
use warden_hcloud_fake::{Config, Fake, Faults};

const TOKEN: &str = "test-token";

/// The fake's defaults with two items a page, so every listing pages.
fn faults() -> Faults {
    Faults {
        max_per_page: 2,
        ..Faults::default()
    }
}

async fn start(faults: Faults) -> (String, Fake) {
    Fake::start(Config::new(TOKEN), faults).await.unwrap()
}

/// How many requests matched `pred` on "METHOD /path".
fn requests(fake: &Fake, pred: impl Fn(&str) -> bool) -> u64 {
    let state = fake.state();
    let counts = state["requests"].as_object().cloned().unwrap_or_default();
    counts
        .iter()
        .filter(|(k, _)| pred(k))
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum()
}

/// The servers that were not deleted.
fn live(fake: &Fake) -> Vec<Value> {
    let state = fake.state();
    let servers = state["servers"].as_array().cloned().unwrap_or_default();
    servers
        .into_iter()
        .filter(|s| s["status"] != "deleted")
        .collect()
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
        // the fake's node snapshot
        image: NodeImage::Id("1001".into()),
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
    let (base, fake) = start(faults()).await;
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
    assert_eq!(requests(&fake, |r| r == "GET /v1/server_types"), 3);
}

#[tokio::test]
async fn create_list_delete_roundtrip() {
    let (base, fake) = start(faults()).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(false));
    let made = p.scale_out(3).await.unwrap();
    assert_eq!(made.len(), 3);
    assert!(made
        .iter()
        .all(|m| m.id.is_some() && m.candidate.server_type == "cx42"));
    let state = fake.state();
    let b = &state["creates"][0];
    assert_eq!(b["image"], "1001");
    assert_eq!(b["labels"]["warden-pool"], "edge");
    assert_eq!(b["labels"]["role"], "game-node");
    assert!(b["user_data"]
        .as_str()
        .unwrap()
        .starts_with("#cloud-config"));
    // create_server and start_server were both polled until success
    // (3 polls each with action_polls = 2, for three servers)
    assert_eq!(requests(&fake, |r| r.starts_with("GET /v1/actions/")), 18);
    // three servers at two a page: the list follows next_page
    let listed = p.list().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(requests(&fake, |r| r == "GET /v1/servers"), 2);
    assert!(listed
        .iter()
        .all(|s| s.labels.get("warden-pool").map(String::as_str) == Some("edge")));
    assert!(listed.iter().all(|s| s.status == "running"));
    for s in &listed {
        p.scale_in(s.id).await.unwrap();
    }
    assert!(p.list().await.unwrap().is_empty());
    assert!(live(&fake).is_empty());
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
    let f = Faults {
        unavailable: vec![
            ("cx42".into(), "fsn1".into(), 412),
            ("cx42".into(), "nbg1".into(), 503),
        ],
        ..faults()
    };
    let (base, fake) = start(f).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(false));
    let made = p.scale_out(1).await.unwrap();
    assert_eq!(made[0].candidate.server_type, "cx52");
    assert_eq!(made[0].candidate.location, "hel1");
    let d = p.decisions();
    assert!(d.iter().any(|l| l.contains("cx42 in fsn1 unavailable")));
    assert!(d.iter().any(|l| l.contains("cx42 in nbg1 unavailable")));
    // the 503 was retried before falling back
    assert_eq!(requests(&fake, |r| r.starts_with("POST ")), 1 + 5 + 1);
    let servers = live(&fake);
    assert_eq!(servers.len(), 1);
    assert_eq!(
        (servers[0]["type"].as_str(), servers[0]["location"].as_str()),
        (Some("cx52"), Some("hel1"))
    );
}

#[tokio::test]
async fn retries_429_423_409_503_with_backoff() {
    let mut f = faults();
    for (s, code) in [
        (429, "rate_limit_exceeded"),
        (423, "locked"),
        (409, "conflict"),
        (503, "unavailable"),
    ] {
        f.script
            .push_back(("POST".into(), "/v1/servers".into(), s, code.into()));
    }
    let (base, fake) = start(f).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(false));
    let started = Instant::now();
    let made = p.scale_out(1).await.unwrap();
    assert_eq!(made[0].candidate.location, "fsn1");
    // 10 + 20 + 40 + 80 ms of backoff at least
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(requests(&fake, |r| r.starts_with("POST ")), 5);
    assert_eq!(live(&fake).len(), 1);
}

#[tokio::test]
async fn uniqueness_error_is_not_retried() {
    let (base, fake) = start(faults()).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(false));
    let render = |_: &warden_forecast::hetzner::Candidate| pcfg(false).user_data;
    p.create_node("node-a", &render).await.unwrap();
    // the name is taken: the fake answers 409 uniqueness_error, asked once
    match p.create_node("node-a", &render).await {
        Err(Error::Api {
            status: 409, code, ..
        }) => assert_eq!(code, "uniqueness_error"),
        other => panic!("{other:?}"),
    }
    assert_eq!(requests(&fake, |r| r.starts_with("POST ")), 2);
    assert_eq!(live(&fake).len(), 1);
}

#[tokio::test]
async fn a_missing_image_is_refused_not_worked_around() {
    let (base, fake) = start(faults()).await;
    let mut cfg = pcfg(false);
    cfg.image = NodeImage::Id("999999".into());
    let p = Provisioner::new(client(&base, TOKEN), cfg);
    match p.scale_out(1).await {
        Err(Error::Api {
            status: 400,
            code,
            message,
        }) => assert_eq!(
            (code.as_str(), message.as_str()),
            ("invalid_input", "image not found")
        ),
        other => panic!("{other:?}"),
    }
    // no other (type, location) was tried: another one would not find the image either
    assert_eq!(requests(&fake, |r| r.starts_with("POST ")), 1);
    assert!(live(&fake).is_empty());
}

#[tokio::test]
async fn rate_limit_headers_pace_requests() {
    let f = Faults {
        rate_limit: 4,
        refill_per_sec: 20.0,
        ..faults()
    };
    let (base, fake) = start(f).await;
    let c = client(&base, TOKEN);
    for _ in 0..12 {
        c.server_types().await.unwrap();
    }
    let rl = c.rate_limit().await;
    assert_eq!(rl.limit, Some(4));
    assert!(rl.reset.is_some() && rl.remaining.is_some());
    // 36 pages read; the client waited for tokens instead of running into 429s
    // (a few may still happen at the edge, and are retried)
    assert!(requests(&fake, |r| r == "GET /v1/server_types") >= 36);
    let limited = fake.state()["rate_limited"].as_u64().unwrap();
    assert!(limited <= 3, "{limited} requests hit 429");
}

#[tokio::test]
async fn an_empty_bucket_is_waited_out() {
    // a bucket of one token, refilled at 10 a second: without the wait the
    // second call would be a 429 the client must retry
    let f = Faults {
        rate_limit: 1,
        refill_per_sec: 10.0,
        ..faults()
    };
    let (base, fake) = start(f).await;
    fake.set_faults(&json!({"tokens": 0})).unwrap();
    let c = client(&base, TOKEN);
    c.newest_snapshot("warden-node=1").await.unwrap();
    let limited = fake.state()["rate_limited"].as_u64().unwrap();
    assert!(limited >= 1);
    assert_eq!(c.rate_limit().await.remaining, Some(0));
    // the bucket is known empty now: the client waits before asking again
    assert_eq!(
        c.newest_snapshot("warden-node=1").await.unwrap(),
        Some(1001)
    );
    assert_eq!(fake.state()["rate_limited"].as_u64().unwrap(), limited);
}

#[tokio::test]
async fn wrong_token_is_unauthorized() {
    let (base, _fake) = start(faults()).await;
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
    let (base, fake) = start(faults()).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(true));
    let made = p.scale_out(3).await.unwrap();
    assert_eq!(made.len(), 3);
    assert!(made.iter().all(|m| m.id.is_none()));
    p.scale_in(77).await.unwrap();
    assert_eq!(requests(&fake, |r| !r.starts_with("GET ")), 0);
    assert!(requests(&fake, |r| r.starts_with("GET ")) > 0);
    let d = p.decisions();
    assert_eq!(d.len(), 4);
    assert!(d[0].starts_with("would create") && d[3] == "would delete server 77");
}

#[tokio::test]
async fn failed_create_action_cleans_up() {
    let f = Faults {
        fail_actions: true,
        ..faults()
    };
    let (base, fake) = start(f).await;
    let p = Provisioner::new(client(&base, TOKEN), pcfg(false));
    assert!(
        matches!(p.scale_out(1).await, Err(Error::Api { code, .. }) if code == "action_failed")
    );
    // it was created, then deleted: nothing left billing
    let state = fake.state();
    assert_eq!(state["servers"].as_array().unwrap().len(), 1);
    assert!(live(&fake).is_empty());
    assert_eq!(requests(&fake, |r| r.starts_with("DELETE ")), 1);
}

#[tokio::test]
async fn calls_are_bounded_in_time() {
    let f = Faults {
        slow_ms: 60_000,
        ..faults()
    };
    let (base, _fake) = start(f).await;
    let mut cfg = ClientConfig::new(TOKEN);
    cfg.base_url = base;
    cfg.request_timeout = Duration::from_millis(200);
    let c = Client::new(cfg).unwrap();
    let t = Instant::now();
    assert!(matches!(c.server_types().await, Err(Error::Http(_))));
    // far below the fake's minute: the client's timeout ended it
    assert!(t.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn action_wait_has_a_deadline() {
    let f = Faults {
        action_polls: 1_000_000,
        ..faults()
    };
    let (base, _fake) = start(f).await;
    let mut cfg = pcfg(false);
    cfg.action_deadline = Duration::from_millis(100);
    let p = Provisioner::new(client(&base, TOKEN), cfg);
    assert!(matches!(p.scale_out(1).await, Err(Error::Exhausted(_))));
}

#[tokio::test]
async fn nodes_boot_the_newest_snapshot_with_the_label_and_none_is_a_clear_error() {
    let (base, fake) = start(faults()).await;
    let mut cfg = pcfg(false);
    cfg.image = NodeImage::Newest("warden-node=1".into());
    let p = Provisioner::new(client(&base, TOKEN), cfg);
    let first = p.scale_out(1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(fake.state()["creates"][0]["image"], "1001");
    // A new upload is used by the next create, with no config change.
    fake.add_snapshot(&warden_hcloud_fake::Snapshot {
        id: 1002,
        labels: BTreeMap::from([("warden-node".to_string(), "1".to_string())]),
    })
    .unwrap();
    p.scale_out(1).await.unwrap();
    assert_eq!(fake.state()["creates"][1]["image"], "1002");

    let mut cfg = pcfg(false);
    cfg.image = NodeImage::Newest("warden-node=9".into());
    let p = Provisioner::new(client(&base, TOKEN), cfg);
    match p.scale_out(1).await {
        Err(Error::Config(why)) => assert!(why.contains("warden-node=9"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.state()["creates"].as_array().map(Vec::len), Some(2));
}
