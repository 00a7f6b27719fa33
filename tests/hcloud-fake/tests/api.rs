//! The fake's API through its binary, as a Hetzner client sees it: faults set at run time
//! through `/_fake/faults` (a (type, location) answering 412 or 503, scripted errors, a
//! create action ending in `error`, an empty token bucket answering 429 with its
//! RateLimit-* headers), name clashes, wrong tokens; images (snapshots by label, newest
//! first, one added at run time) and the image a create must name; the server actions of a
//! rescue-system image upload ending in a labelled snapshot; the catalog, label selectors,
//! sort and pagination.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use warden_hcloud_fake::{FakeOptions, FakeProcess, Snapshot};

fn start(snapshots: &[&str]) -> FakeProcess {
    FakeProcess::start(FakeOptions {
        snapshots: snapshots.iter().map(|s| s.parse().unwrap()).collect(),
        bin: Some(PathBuf::from(env!("CARGO_BIN_EXE_warden-hcloud-fake"))),
        ..FakeOptions::default()
    })
    .expect("start warden-hcloud-fake")
}

/// One request with the test token: status, headers (lower-case names) and JSON body.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, HashMap<String, String>, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer test-token\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.take(1 << 20).read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (
        status,
        headers,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn create_body(name: &str, ty: &str, location: &str, image: Value) -> Value {
    json!({"name": name, "server_type": ty, "location": location, "image": image,
           "labels": {"pool": "api-test"}, "user_data": "#cloud-config\n"})
}

/// The documented error shape, and its code.
fn error_code(body: &Value) -> &str {
    let e = &body["error"];
    assert!(
        e["message"].is_string() && e["details"].is_object(),
        "{body}"
    );
    e["code"].as_str().unwrap()
}

fn ids(list: &Value) -> Vec<u64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn faults_set_at_run_time_answer_like_hetzner() {
    let fake = start(&[]);
    let create = |name: &str, loc: &str| {
        fake.api(
            "POST",
            "/v1/servers",
            Some(&create_body(name, "cx22", loc, json!("1001"))),
        )
    };

    // a (type, location) that is out of stock, then one that is down
    fake.set_faults(&json!({"unavailable": [["cx22", "fsn1", 412]]}));
    let (status, body) = create("a", "fsn1");
    assert_eq!((status, error_code(&body)), (412, "resource_unavailable"));
    let (status, body) = create("a", "nbg1");
    assert_eq!(status, 201, "{body}");
    fake.set_faults(&json!({"unavailable": [["cx22", "nbg1", 503]]}));
    let (status, body) = create("b", "nbg1");
    assert_eq!((status, error_code(&body)), (503, "unavailable"));
    // the first fault was replaced, not added to
    let (status, body) = create("b", "fsn1");
    assert_eq!(status, 201, "{body}");

    // a taken name
    let (status, body) = create("a", "fsn1");
    assert_eq!((status, error_code(&body)), (409, "uniqueness_error"));

    // a scripted failure hits the next matching request only
    fake.set_faults(&json!({"script": [["GET", "/v1/servers", 500, "server_error"]]}));
    let (status, body) = fake.api("GET", "/v1/servers", None);
    assert_eq!((status, error_code(&body)), (500, "server_error"));
    let (status, body) = fake.api("GET", "/v1/servers", None);
    assert_eq!(status, 200);
    assert_eq!(body["servers"].as_array().unwrap().len(), 2);

    // a create action that ends in error leaves the server off
    fake.set_faults(&json!({"fail_actions": true, "action_polls": 0}));
    let (status, body) = create("c", "fsn1");
    assert_eq!(status, 201);
    let (id, action) = (
        body["server"]["id"].as_u64().unwrap(),
        body["action"]["id"].as_u64().unwrap(),
    );
    let a = fake.wait_action(action, Duration::from_secs(30)).unwrap();
    assert_eq!(a["status"], "error", "{a}");
    assert_eq!(a["error"]["code"], "action_failed");
    assert!(a["finished"].is_string());
    let (_, s) = fake.api("GET", &format!("/v1/servers/{id}"), None);
    assert_eq!(s["server"]["status"], "off");

    // an empty bucket: 429 with the headers that say when it is full again
    fake.set_faults(&json!({"rate_limit": 2, "refill_per_sec": 0.0}));
    let (status, h, _) = call(fake.addr, "GET", "/v1/locations", None);
    assert_eq!((status, h["ratelimit-remaining"].as_str()), (200, "1"));
    call(fake.addr, "GET", "/v1/locations", None);
    let (status, h, body) = call(fake.addr, "GET", "/v1/locations", None);
    assert_eq!((status, error_code(&body)), (429, "rate_limit_exceeded"));
    assert_eq!(h["ratelimit-limit"], "2");
    assert_eq!(h["ratelimit-remaining"], "0");
    let now = fake.state()["now_ms"].as_u64().unwrap() / 1000;
    assert!(h["ratelimit-reset"].parse::<u64>().unwrap() + 1 >= now);
    assert!(fake.state()["rate_limited"].as_u64().unwrap() >= 1);
    // refilled by the admin endpoint
    fake.set_faults(&json!({"tokens": 2}));
    assert_eq!(call(fake.addr, "GET", "/v1/locations", None).0, 200);

    // faults the fake does not know are refused, and change nothing
    let err = fake
        .try_set_faults(&json!({"fail_everything": true}))
        .unwrap_err();
    assert!(err.contains("400"), "{err}");
    assert_eq!(fake.state()["faults"]["rate_limit"], 2);

    // a wrong token
    let (status, body) = {
        let (s, b) = warden_testkit::http_request(fake.addr, "GET", "/v1/servers", Some("x"), None);
        (s, serde_json::from_str::<Value>(&b).unwrap())
    };
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
}

#[test]
fn snapshots_are_found_by_label_newest_first_and_creates_must_name_an_image() {
    let fake = start(&[
        "1001:warden-node=1",
        "1002:warden-node=1,role=edge",
        "2000:other=1",
    ]);
    let newest = "/v1/images?type=snapshot&label_selector=warden-node%3D1&sort=created:desc";
    let (status, body) = fake.api("GET", newest, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body["images"]), [1002, 1001]);
    let img = &body["images"][0];
    assert_eq!(
        (&img["type"], &img["status"], &img["labels"]["role"]),
        (&json!("snapshot"), &json!("available"), &json!("edge"))
    );
    let (_, body) = fake.api("GET", &newest.replace("desc", "asc"), None);
    assert_eq!(ids(&body["images"]), [1001, 1002]);
    let (_, body) = fake.api("GET", "/v1/images?type=system&sort=name:desc", None);
    let names: Vec<&str> = body["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ubuntu-24.04", "debian-12"]);
    let (_, body) = fake.api(
        "GET",
        "/v1/images?label_selector=role%20in%20(edge,x)",
        None,
    );
    assert_eq!(ids(&body["images"]), [1002]);
    let (status, body) = fake.api("GET", "/v1/images?sort=price", None);
    assert_eq!((status, error_code(&body)), (400, "invalid_input"));

    // a snapshot taken now is the newest, whatever its id
    let added = fake
        .add_snapshot(&"900:warden-node=1".parse::<Snapshot>().unwrap())
        .unwrap();
    assert_eq!(added["image"]["id"], 900);
    assert!(fake.add_snapshot(&"900".parse().unwrap()).is_err());
    let (_, body) = fake.api("GET", &format!("{newest}&per_page=1"), None);
    assert_eq!(ids(&body["images"]), [900]);
    assert_eq!(body["meta"]["pagination"]["next_page"], 2);
    let (status, body) = fake.api("GET", "/v1/images/900", None);
    assert_eq!(
        (status, &body["image"]["labels"]["warden-node"]),
        (200, &json!("1"))
    );

    // a create names an image by id (string or number) or a system image by name
    for (name, image, id, kind) in [
        ("x1", json!("1002"), 1002, "snapshot"),
        ("x2", json!(900), 900, "snapshot"),
        ("x3", json!("debian-12"), 114_690_387, "system"),
    ] {
        let (status, body) = fake.api(
            "POST",
            "/v1/servers",
            Some(&create_body(name, "cx22", "fsn1", image.clone())),
        );
        assert_eq!(status, 201, "{image}: {body}");
        let got = &body["server"]["image"];
        assert_eq!(
            (&got["id"], &got["type"]),
            (&json!(id), &json!(kind)),
            "{image}"
        );
    }
    for image in [json!("42"), json!("no-such-image"), json!(7)] {
        let (status, body) = fake.api(
            "POST",
            "/v1/servers",
            Some(&create_body("x4", "cx22", "fsn1", image.clone())),
        );
        assert_eq!(
            (status, error_code(&body)),
            (400, "invalid_input"),
            "{image}"
        );
        assert_eq!(body["error"]["message"], "image not found");
    }
    let (status, body) = fake.api(
        "POST",
        "/v1/servers",
        Some(&json!({"name": "x5", "server_type": "cx22"})),
    );
    assert_eq!((status, error_code(&body)), (400, "invalid_input"));
    assert_eq!(body["error"]["details"]["fields"][0]["name"], "image");
}

#[test]
fn catalog_selectors_sort_and_pages() {
    let fake = start(&[]);
    let (_, body) = fake.api("GET", "/v1/server_types?name=cx42", None);
    let t = &body["server_types"][0];
    assert_eq!((&t["memory"], &t["cores"]), (&json!(16.0), &json!(8)));
    let prices: Vec<(&str, &str)> = t["prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["location"].as_str().unwrap(),
                p["price_hourly"]["net"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(prices, [("fsn1", "0.0260000000"), ("nbg1", "0.0260000000")]);
    let (status, body) = fake.api("GET", &format!("/v1/server_types/{}", t["id"]), None);
    assert_eq!(
        (status, &body["server_type"]["name"]),
        (200, &json!("cx42"))
    );
    // not sold in hel1
    let (status, body) = fake.api(
        "POST",
        "/v1/servers",
        Some(&create_body("n", "cx42", "hel1", json!("1001"))),
    );
    assert_eq!((status, error_code(&body)), (412, "resource_unavailable"));

    let (_, body) = fake.api("GET", "/v1/locations?per_page=3", None);
    assert_eq!(body["locations"].as_array().unwrap().len(), 3);
    assert_eq!(body["meta"]["pagination"]["total_entries"], 4);
    assert_eq!(body["meta"]["pagination"]["next_page"], 2);
    let (_, body) = fake.api("GET", "/v1/locations?name=hel1", None);
    assert_eq!(body["locations"][0]["city"], "Helsinki");

    for (name, pool) in [("s-a", "one"), ("s-b", "two"), ("s-c", "one")] {
        let mut b = create_body(name, "cx22", "fsn1", json!("1001"));
        b["labels"] = json!({"pool": pool});
        assert_eq!(fake.api("POST", "/v1/servers", Some(&b)).0, 201);
    }
    let names = |path: &str| -> Vec<String> {
        let (status, body) = fake.api("GET", path, None);
        assert_eq!(status, 200, "{body}");
        body["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("/v1/servers?label_selector=pool%3Done&sort=name:desc"),
        ["s-c", "s-a"]
    );
    assert_eq!(names("/v1/servers?label_selector=pool!%3Done"), ["s-b"]);
    assert_eq!(names("/v1/servers?per_page=2&page=2"), ["s-c"]);
    let (status, body) = fake.api("GET", "/v1/servers?label_selector=pool%20(x", None);
    assert_eq!((status, error_code(&body)), (400, "invalid_input"));
}

#[test]
fn a_raw_image_upload_by_the_rescue_system_ends_in_a_labelled_snapshot() {
    let fake = start(&["1001:warden-node=1"]);
    let create = create_body("upload-1", "cx22", "fsn1", json!("debian-12"));
    let (status, body) = fake.api("POST", "/v1/servers", Some(&create));
    assert_eq!(status, 201, "{body}");
    let sid = body["server"]["id"].as_u64().unwrap();
    let act =
        |a: &str, b: Option<&Value>| fake.api("POST", &format!("/v1/servers/{sid}/actions/{a}"), b);
    let (status, body) = act("enable_rescue", Some(&json!({"type": "linux64"})));
    assert_eq!(status, 201, "{body}");
    assert!(body["root_password"].is_string(), "{body}");
    assert_eq!(body["action"]["command"], "enable_rescue");
    for (a, command) in [("poweron", "start_server"), ("poweroff", "stop_server")] {
        let (status, body) = act(a, None);
        assert_eq!((status, &body["action"]["command"]), (201, &json!(command)));
    }
    let labels = json!({"warden-node": "1", "warden-version": "0.1.0"});
    let snapshot =
        json!({"type": "snapshot", "description": "warden-node 0.1.0", "labels": labels});
    let (status, body) = act("create_image", Some(&snapshot));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["action"]["command"], "create_image");
    let id = body["image"]["id"].as_u64().unwrap();
    let newest = "/v1/images?type=snapshot&label_selector=warden-node%3D1&sort=created:desc";
    let (_, body) = fake.api("GET", newest, None);
    assert_eq!(ids(&body["images"]), [id, 1001]);
    assert_eq!(body["images"][0]["labels"], labels);
    assert_eq!(body["images"][0]["description"], "warden-node 0.1.0");

    let (status, body) = act("create_image", Some(&json!({"type": "iso"})));
    assert_eq!((status, error_code(&body)), (400, "invalid_input"));
    let (status, body) = act("explode", None);
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, _) = fake.api("DELETE", &format!("/v1/servers/{sid}"), None);
    assert_eq!(status, 200);
    let (status, body) = act("poweron", None);
    assert_eq!((status, error_code(&body)), (404, "not_found"));
}
