//! The resources of the fake API under `/v1`, with the bodies Hetzner documents: servers
//! (create, list with label selectors, sort and pagination, get, delete), actions (polled
//! until `success` or `error`), server types with prices per location, locations, and
//! images (system images and snapshots, filtered by type and label, sorted by created), and
//! the server actions of a rescue-system image upload (`enable_rescue`, power, `create_image`).
//! [`crate::api`] calls [`route`] once a request has passed its front door.

use std::cmp::Ordering;
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::api::{ipv4, status, Action, Fake, Server, St};
use crate::catalog;
use crate::images::Image;
use crate::machine;
use crate::selector;
use crate::time::rfc3339;

/// Largest user data the API accepts (32 KiB).
const MAX_USER_DATA: usize = 32 * 1024;

/// The query string as pairs, in order: some parameters (`sort`, `type`, `status`) may be
/// given more than once.
#[derive(Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An API answer: the status and the JSON body.
pub type Answer = (StatusCode, Value);

/// An API error with the documented body `{"error":{"code","message","details"}}`.
pub fn error(status: u16, code: &str, message: &str) -> Answer {
    error_with(status, code, message, json!({}))
}

fn error_with(status: u16, code: &str, message: &str, details: Value) -> Answer {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        json!({"error": {"code": code, "message": message, "details": details}}),
    )
}

/// `invalid_input` naming the field, as the API reports a bad field.
fn invalid_field(field: &str, message: &str) -> Answer {
    error_with(
        400,
        "invalid_input",
        &format!("invalid input in field '{field}'"),
        json!({"fields": [{"name": field, "messages": [message]}]}),
    )
}

/// A server name is a hostname (RFC 1123), as the API requires; this also keeps it a
/// safe directory name.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// One page of `items` under `key`, with `meta.pagination` (`per_page` at most `cap`).
fn paginate(items: Vec<Value>, q: &Params, cap: usize, key: &str) -> Value {
    let number = |k: &str, default: usize| {
        q.get(k)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let per_page = number("per_page", 25).clamp(1, cap.max(1));
    let page = number("page", 1).max(1);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
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

/// Orders `items` by id, then by the `sort` parameters (`id`, `name`, `created`, each
/// optionally `:asc` or `:desc`; the first given decides first); `invalid_input` for a
/// field the API does not sort by.
fn sort(items: &mut [Value], q: &Params) -> Result<(), Answer> {
    let mut keys = Vec::new();
    for s in q.all("sort") {
        let (field, dir) = s.split_once(':').unwrap_or((s, "asc"));
        if !matches!(field, "id" | "name" | "created") || !matches!(dir, "asc" | "desc") {
            return Err(invalid_field("sort", &format!("cannot sort by {s:?}")));
        }
        keys.push((field.to_string(), dir == "desc"));
    }
    items.sort_by(|a, b| {
        let by = |f: &str| match f {
            "id" => a[f].as_u64().cmp(&b[f].as_u64()),
            // RFC 3339 times in one format order as text
            _ => a[f].as_str().cmp(&b[f].as_str()),
        };
        keys.iter()
            .map(|(f, desc)| if *desc { by(f).reverse() } else { by(f) })
            .find(|o| *o != Ordering::Equal)
            .unwrap_or_else(|| by("id"))
    });
    Ok(())
}

/// Sorts and pages a listing.
fn listing(mut items: Vec<Value>, q: &Params, cap: usize, key: &str) -> Answer {
    match sort(&mut items, q) {
        Ok(()) => (StatusCode::OK, paginate(items, q, cap, key)),
        Err(e) => e,
    }
}

/// Keeps the items whose labels match the `label_selector` parameter, if any.
fn select(items: Vec<Value>, q: &Params) -> Result<Vec<Value>, Answer> {
    let sel = q.get("label_selector").unwrap_or("");
    let mut out = Vec::with_capacity(items.len());
    for v in items {
        match selector::matches(&v["labels"], sel) {
            Ok(true) => out.push(v),
            Ok(false) => {}
            Err(e) => return Err(invalid_field("label_selector", &e)),
        }
    }
    Ok(out)
}

/// Whether a filter given as possibly repeated parameter `key` admits `value` (any of
/// the given values; no filter when the parameter is absent).
fn admits(q: &Params, key: &str, value: &str) -> bool {
    let mut given = q.all(key).peekable();
    given.peek().is_none() || given.any(|v| v == value)
}

pub(crate) fn server_json(s: &Server) -> Value {
    let loc = catalog::location(&s.location);
    let lid = loc.map(|l| l.id).unwrap_or(0);
    let ip = ipv4(s.id);
    json!({
        "id": s.id, "name": s.name, "status": status(s),
        "created": rfc3339(s.created),
        "labels": s.labels,
        "server_type": catalog::server_type(&s.server_type),
        "image": s.image,
        "iso": null, "rescue_enabled": false, "locked": false, "backup_window": null,
        "outgoing_traffic": 0, "ingoing_traffic": 0, "included_traffic": 21990232555520u64,
        "primary_disk_size": catalog::server_type(&s.server_type).map(|t| t["disk"].clone()),
        "protection": {"delete": false, "rebuild": false},
        "volumes": [], "load_balancers": [], "placement_group": null, "private_net": [],
        "public_net": {
            "ipv4": {"id": s.id, "ip": ip, "blocked": false,
                     "dns_ptr": format!("static.{ip}.clients.your-server.de")},
            "ipv6": null, "floating_ips": [], "firewalls": []
        },
        "datacenter": {
            "id": lid, "name": format!("{}-dc1", s.location),
            "description": format!("{} DC 1", s.location),
            "location": loc.map(catalog::Location::json).unwrap_or(Value::Null),
        }
    })
}

fn new_action(st: &mut St, command: &str, server: u64, waits: bool) -> Value {
    st.next_id += 1;
    let a = json!({
        "id": st.next_id, "command": command, "status": "running", "progress": 0,
        "started": rfc3339(SystemTime::now()), "finished": null,
        "resources": [{"id": server, "type": "server"}], "error": null
    });
    st.actions.insert(
        st.next_id,
        Action {
            body: a.clone(),
            polls: 0,
            waits_for: waits.then_some(server),
        },
    );
    a
}

/// Answers one `/v1` request; `boot` is set to a server created now, to boot later.
pub(crate) fn route(
    fake: &Fake,
    st: &mut St,
    method: &Method,
    path: &str,
    q: &Params,
    body: &Bytes,
    boot: &mut Option<u64>,
) -> Answer {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let cap = st.faults.max_per_page;
    let id = |s: &str| s.parse::<u64>().ok();
    let one = |key: &str, v: Option<Value>| match v {
        Some(v) => (StatusCode::OK, json!({ key: v })),
        None => error(404, "not_found", &format!("{key} not found")),
    };
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["v1", "server_types"]) => {
            let mut types = catalog::server_types();
            if let Some(name) = q.get("name") {
                types.retain(|t| t["name"] == name);
            }
            listing(types, q, cap, "server_types")
        }
        ("GET", ["v1", "server_types", tid]) => {
            one("server_type", id(tid).and_then(catalog::server_type_by_id))
        }
        ("GET", ["v1", "locations"]) => {
            let locs = catalog::LOCATIONS
                .iter()
                .filter(|l| q.get("name").is_none_or(|n| n == l.name))
                .map(catalog::Location::json)
                .collect();
            listing(locs, q, cap, "locations")
        }
        ("GET", ["v1", "locations", lid]) => one(
            "location",
            catalog::LOCATIONS
                .iter()
                .find(|l| id(lid) == Some(l.id))
                .map(catalog::Location::json),
        ),
        ("GET", ["v1", "images"]) => images(st, q, cap),
        ("GET", ["v1", "images", iid]) => one(
            "image",
            st.images
                .iter()
                .find(|i| id(iid) == Some(i.id))
                .map(Image::json),
        ),
        ("GET", ["v1", "servers"]) => {
            let items = st
                .servers
                .values()
                .filter(|s| s.deleted.is_none())
                .filter(|s| q.get("name").is_none_or(|n| n == s.name))
                .filter(|s| admits(q, "status", status(s)))
                .map(server_json)
                .collect();
            match select(items, q) {
                Ok(items) => listing(items, q, cap, "servers"),
                Err(e) => e,
            }
        }
        ("POST", ["v1", "servers"]) => create(fake, st, body, boot),
        ("GET", ["v1", "servers", sid]) => one(
            "server",
            id(sid)
                .and_then(|i| st.servers.get(&i))
                .filter(|s| s.deleted.is_none())
                .map(server_json),
        ),
        ("DELETE", ["v1", "servers", sid]) => delete(fake, st, id(sid)),
        ("POST", ["v1", "servers", sid, "actions", act]) => server_action(st, id(sid), act, body),
        ("GET", ["v1", "actions", aid]) => poll_action(st, id(aid)),
        _ => error(404, "not_found", "no such endpoint"),
    }
}

/// `GET /v1/images`: filters `type`, `status`, `name`, `label_selector`, `architecture`
/// and `bound_to` (no image here is bound), then `sort` and pages.
fn images(st: &St, q: &Params, cap: usize) -> Answer {
    for t in q.all("type") {
        if !matches!(t, "system" | "snapshot" | "backup" | "app") {
            return invalid_field("type", &format!("unknown image type {t:?}"));
        }
    }
    let items = st
        .images
        .iter()
        .filter(|i| admits(q, "type", i.kind) && admits(q, "status", "available"))
        .filter(|_| admits(q, "architecture", "x86") && q.get("bound_to").is_none())
        .filter(|i| q.get("name").is_none_or(|n| i.name.as_deref() == Some(n)))
        .map(Image::json)
        .collect();
    match select(items, q) {
        Ok(items) => listing(items, q, cap, "images"),
        Err(e) => e,
    }
}

fn delete(fake: &Fake, st: &mut St, sid: Option<u64>) -> Answer {
    let Some(s) = sid
        .and_then(|i| st.servers.get_mut(&i))
        .filter(|s| s.deleted.is_none())
    else {
        return error(404, "not_found", "server not found");
    };
    s.deleted = Some(SystemTime::now());
    let sid = s.id;
    if let Some(m) = &s.machine {
        if let (Some(pid), None) = (m.pid, &m.exit) {
            let dir = m.dir.clone();
            let grace = fake.stop_grace();
            tokio::spawn(async move { machine::destroy(pid, &dir, grace).await });
        }
    }
    let a = new_action(st, "delete_server", sid, false);
    (StatusCode::OK, json!({"action": a}))
}

/// `POST /v1/servers/{id}/actions/{action}`: what uploading a raw image by the rescue system
/// needs (node-image/upload.sh): `enable_rescue` (answers a root password), `poweron`,
/// `poweroff`, `shutdown`, `reset`, `reboot`, and `create_image`, which adds a snapshot with
/// the body's `description` and `labels`, newer than every image so far. Nothing changes
/// the machine itself; the requests are counted in `/_fake/state` like any other.
fn server_action(st: &mut St, sid: Option<u64>, act: &str, body: &Bytes) -> Answer {
    let Some(sid) = sid.filter(|i| st.servers.get(i).is_some_and(|s| s.deleted.is_none())) else {
        return error(404, "not_found", "server not found");
    };
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return error(400, "invalid_input", &e.to_string()),
        }
    };
    let command = match act {
        "enable_rescue" => "enable_rescue",
        "poweron" => "start_server",
        "poweroff" => "stop_server",
        "shutdown" => "shutdown_server",
        "reset" => "reset_server",
        "reboot" => "reboot_server",
        "create_image" => "create_image",
        _ => return error(404, "not_found", "no such action"),
    };
    let mut out = json!({});
    if act == "enable_rescue" {
        out["root_password"] = json!(format!("rescue-{sid}"));
    }
    if act == "create_image" {
        let kind = req["type"].as_str().unwrap_or("snapshot");
        if kind != "snapshot" && kind != "backup" {
            return invalid_field("type", &format!("unknown image type {kind:?}"));
        }
        let labels = match serde_json::from_value(req["labels"].clone()) {
            Ok(l) => l,
            Err(_) if req["labels"].is_null() => Default::default(),
            Err(e) => return invalid_field("labels", &e.to_string()),
        };
        let created = st
            .images
            .iter()
            .map(|i| i.created + std::time::Duration::from_secs(1))
            .fold(SystemTime::now(), SystemTime::max);
        let snapshot = crate::images::Snapshot {
            id: st.images.iter().map(|i| i.id).max().unwrap_or(0) + 1,
            labels,
        };
        let mut image = Image::snapshot(&snapshot, created);
        if let Some(d) = req["description"].as_str() {
            image.description = d.to_string();
        }
        out["image"] = image.json();
        st.images.push(image);
    }
    out["action"] = new_action(st, command, sid, false);
    (StatusCode::CREATED, out)
}

/// `GET /v1/actions/{id}`: `running` for the configured number of polls and until its
/// server has booted, then `success`, or `error` for a create when actions fail.
fn poll_action(st: &mut St, aid: Option<u64>) -> Answer {
    let polls = st.faults.action_polls;
    let fail = st.faults.fail_actions;
    let booted = |sid: u64| {
        st.servers
            .get(&sid)
            .is_none_or(|s| s.deleted.is_some() || s.failed || Instant::now() >= s.boots_at)
    };
    let Some(ready) = aid
        .and_then(|a| st.actions.get(&a))
        .map(|a| a.waits_for.is_none_or(booted))
    else {
        return error(404, "not_found", "action not found");
    };
    let Some(a) = aid.and_then(|a| st.actions.get_mut(&a)) else {
        return error(404, "not_found", "action not found");
    };
    let mut failed_server = None;
    if a.body["status"] == "running" {
        a.polls += 1;
        if a.polls > polls && ready {
            let b = &mut a.body;
            if fail && b["command"] == "create_server" {
                b["status"] = json!("error");
                b["error"] = json!({"code": "action_failed", "message": "boot failed"});
                failed_server = b["resources"][0]["id"].as_u64();
            } else {
                b["status"] = json!("success");
                b["progress"] = json!(100);
            }
            b["finished"] = json!(rfc3339(SystemTime::now()));
        } else {
            a.body["progress"] = json!(50);
        }
    }
    let out = json!({"action": a.body.clone()});
    if let Some(s) = failed_server.and_then(|sid| st.servers.get_mut(&sid)) {
        s.failed = true;
    }
    (StatusCode::OK, out)
}

/// The image a create names: an id (number, or digits as a string) of any image, or the
/// name of a system image (snapshots have no name).
fn find_image<'a>(st: &'a St, image: &Value) -> Result<&'a Image, Answer> {
    let by_id = |id: u64| st.images.iter().find(|i| i.id == id);
    let found = match image {
        Value::Null => return Err(invalid_field("image", "is required")),
        Value::Number(n) => n.as_u64().and_then(by_id),
        Value::String(s) => match s.parse::<u64>() {
            Ok(id) => by_id(id),
            Err(_) => st.images.iter().find(|i| i.name.as_deref() == Some(s)),
        },
        _ => return Err(invalid_field("image", "must be an ID or a name")),
    };
    // What Hetzner answers for an image that does not exist.
    found.ok_or_else(|| error(400, "invalid_input", "image not found"))
}

fn create(fake: &Fake, st: &mut St, body: &Bytes, boot: &mut Option<u64>) -> Answer {
    let b: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return error(400, "json_error", "request body must be a JSON object"),
        Err(e) => return error(400, "json_error", &format!("invalid JSON: {e}")),
    };
    let Some(name) = b["name"].as_str() else {
        return invalid_field("name", "is required");
    };
    if !valid_name(name) {
        return invalid_field("name", "must be a valid hostname");
    }
    let Some(ty) = b["server_type"].as_str() else {
        return invalid_field("server_type", "is required");
    };
    let loc = match (b["location"].as_str(), b["datacenter"].as_str()) {
        (Some(l), _) => l.to_string(),
        (None, Some(dc)) => dc.split('-').next().unwrap_or(dc).to_string(),
        (None, None) => "fsn1".to_string(),
    };
    if catalog::server_type(ty).is_none() {
        return invalid_field("server_type", "server type not found");
    }
    if catalog::location(&loc).is_none() {
        return invalid_field("location", "location not found");
    }
    let image = match find_image(st, &b["image"]) {
        Ok(i) => i.json(),
        Err(e) => return e,
    };
    let labels = match &b["labels"] {
        Value::Null => json!({}),
        Value::Object(m) if m.values().all(Value::is_string) => b["labels"].clone(),
        _ => return invalid_field("labels", "must be an object of strings"),
    };
    let user_data = match &b["user_data"] {
        Value::Null => None,
        Value::String(s) if s.len() <= MAX_USER_DATA => Some(s.clone()),
        Value::String(_) => return invalid_field("user_data", "must be at most 32 KiB"),
        _ => return invalid_field("user_data", "must be a string"),
    };
    if st
        .servers
        .values()
        .any(|s| s.deleted.is_none() && s.name == name)
    {
        return error(409, "uniqueness_error", "server name is already used");
    }
    if let Some((_, _, s)) = st
        .faults
        .unavailable
        .iter()
        .find(|(t, l, _)| t == ty && *l == loc)
    {
        let code = match s {
            503 => "unavailable",
            403 => "resource_limit_exceeded",
            _ => "resource_unavailable",
        };
        return error(*s, code, "server type not available in location");
    }
    if !catalog::sold_in(ty, &loc) {
        return error(
            412,
            "resource_unavailable",
            "server type not sold in location",
        );
    }
    st.creates.push(b.clone());
    st.next_id += 1;
    let sid = st.next_id;
    let server = Server {
        id: sid,
        name: name.to_string(),
        labels,
        server_type: ty.to_string(),
        location: loc,
        image,
        user_data,
        created: SystemTime::now(),
        boots_at: Instant::now() + fake.boot_delay(),
        deleted: None,
        failed: false,
        machine: None,
    };
    let out = server_json(&server);
    st.servers.insert(sid, server);
    let action = new_action(st, "create_server", sid, true);
    let start = b["start_after_create"].as_bool().unwrap_or(true);
    let next: Vec<Value> = if start {
        vec![new_action(st, "start_server", sid, true)]
    } else {
        Vec::new()
    };
    *boot = Some(sid);
    (
        StatusCode::CREATED,
        json!({"server": out, "action": action, "next_actions": next, "root_password": null}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn sort_by_created_then_id_and_refuse_unknown_fields() {
        let mut items = vec![
            json!({"id": 3, "created": "2025-01-01T00:00:00+00:00"}),
            json!({"id": 1, "created": "2025-03-01T00:00:00+00:00"}),
            json!({"id": 2, "created": "2025-01-01T00:00:00+00:00"}),
        ];
        sort(&mut items, &params(&[("sort", "created:desc")])).unwrap();
        let ids: Vec<u64> = items.iter().filter_map(|v| v["id"].as_u64()).collect();
        assert_eq!(ids, [1, 2, 3]);
        let bad = sort(&mut items, &params(&[("sort", "price")])).unwrap_err();
        assert_eq!(bad.0, StatusCode::BAD_REQUEST);
        assert_eq!(bad.1["error"]["code"], "invalid_input");
    }

    #[test]
    fn pages_say_where_the_next_is() {
        let items: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let p = paginate(items, &params(&[("per_page", "2"), ("page", "3")]), 50, "x");
        assert_eq!(p["x"], json!([4]));
        assert_eq!(p["meta"]["pagination"]["next_page"], Value::Null);
        assert_eq!(p["meta"]["pagination"]["previous_page"], 2);
        assert_eq!(p["meta"]["pagination"]["last_page"], 3);
    }
}
