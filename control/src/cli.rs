//! The operator's side of the control API: `warden status`, `warden wake ID`, `warden
//! events --follow`, `warden token …`. Each command is one or two HTTP calls; errors show
//! the API's message.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};
use warden_lifecycle::Command;

/// Where the API is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// The control API's base URL.
    #[arg(
        long,
        env = "WARDEN_API",
        default_value = "http://127.0.0.1:9941",
        global = true
    )]
    pub api: String,
    /// A bearer token (`warden token create`); prefer the environment variable.
    #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A PEM CA certificate to trust for an HTTPS API with a private certificate.
    #[arg(long, env = "WARDEN_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
}

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        let mut b = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(None::<Duration>);
        if let Some(path) = &args.cacert {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{}: not a PEM certificate", path.display()))?;
            b = b.add_root_certificate(cert);
        }
        Ok(Client {
            base: args.api.trim_end_matches('/').to_string(),
            token: args.token.clone(),
            http: b.build().context("building the HTTP client")?,
        })
    }

    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().with_context(|| {
            format!("calling {url} (is `warden run` running with an [api] section?)")
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: Value = resp.json().unwrap_or(Value::Null);
        let msg = body["error"]["message"].as_str().unwrap_or("no details");
        let code = body["error"]["code"].as_str().unwrap_or("");
        if status == reqwest::StatusCode::UNAUTHORIZED && self.token.is_none() {
            bail!("{msg}: set WARDEN_TOKEN (HTTP 401)");
        }
        bail!("{msg} (HTTP {} {code})", status.as_u16())
    }

    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let resp = self.send(method, path, body, Some(Duration::from_secs(60)))?;
        if resp.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        resp.json().context("reading the API's answer")
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `warden status`: one line per server.
pub fn status(client: &Client, json: bool) -> anyhow::Result<()> {
    let servers = client.call(reqwest::Method::GET, "/v1/servers", None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&servers)?);
        return Ok(());
    }
    let rows: Vec<[String; 7]> = servers
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|s| {
            [
                text(&s["id"]),
                text(&s["state"]),
                text(&s["players_online"]),
                s["memory_gb"]
                    .as_f64()
                    .map_or("-".into(), |m| format!("{m} GB")),
                s["eta_secs"]
                    .as_u64()
                    .map_or("-".into(), |e| format!("{e} s")),
                text(&s["node"]),
                s["hosts"]
                    .as_array()
                    .map(|h| h.iter().map(text).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(
        [
            "SERVER", "STATE", "PLAYERS", "MEMORY", "ETA", "NODE", "HOSTS",
        ],
        &rows,
    );
    Ok(())
}

/// Prints `rows` under `head` in aligned columns.
fn table<const N: usize>(head: [&str; N], rows: &[[String; N]]) {
    let head = head.map(String::from);
    let mut widths = head.clone().map(|h| h.len());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&head).chain(rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// `warden nodes`: one line per node of the fleet.
pub fn nodes(client: &Client, json: bool) -> anyhow::Result<()> {
    let nodes = client.call(reqwest::Method::GET, "/v1/nodes", None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(());
    }
    let list = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    let rows: Vec<[String; 8]> = nodes
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|n| {
            let labels = n["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", text(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            [
                text(&n["id"]),
                text(&n["state"]),
                if n["up"].as_bool() == Some(true) {
                    "up"
                } else {
                    "down"
                }
                .to_string(),
                format!(
                    "{} / {} GB",
                    n["allocated_gb"].as_f64().unwrap_or(0.0),
                    n["memory_gb"].as_f64().unwrap_or(0.0)
                ),
                text(&n["servers"]),
                format!("{} ({})", text(&n["address"]), list(&n["roles"])),
                match n["link_port"].as_u64() {
                    Some(p) => format!("{} :{p}", text(&n["link"])),
                    None => text(&n["link"]),
                },
                labels,
            ]
        })
        .collect();
    table(
        [
            "NODE", "STATE", "UP", "MEMORY", "SERVERS", "ADDRESS", "LINK", "LABELS",
        ],
        &rows,
    );
    Ok(())
}

/// `warden capacity`: the controller's last round: the fleet's RAM, the plan's inputs, the
/// nodes it bought, and its last decisions.
pub fn capacity(client: &Client, json: bool) -> anyhow::Result<()> {
    let raw = client.call(reqwest::Method::GET, "/v1/capacity", None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
        return Ok(());
    }
    let v: warden_capacity::CapacityView =
        serde_json::from_value(raw).context("the API's capacity view")?;
    let age = warden_store::now_unix_ms().saturating_sub(v.at_unix_ms) / 1000;
    println!("leader {} ({}), planned {age} s ago", v.leader, v.provider);
    println!(
        "RAM: {:.1} GB in use + {:.1} GB waiting of {:.1} GB ready; {} node(s) pending",
        v.used_gb, v.waiting_gb, v.capacity_gb, v.pending
    );
    let forecast = match (v.forecast_gb, &v.method) {
        (Some(gb), Some(m)) => format!("{gb:.1} GB at q{} ({m})", v.quantile),
        _ => "none yet (under two weeks of history): reactive only".into(),
    };
    println!(
        "forecast over the lead time: {forecast}; lead time {:.0} s ({}); hot spares {}; next node {:.0} GB; spent today {:.2} EUR",
        v.lead_time_ms as f64 / 1000.0,
        if v.lead_time_learned { "learned" } else { "configured" },
        v.spares,
        v.node_gb,
        v.cost_today_eur
    );
    let rows: Vec<[String; 5]> = v
        .nodes
        .iter()
        .map(|n| {
            [
                n.id.clone(),
                match (n.ready, n.draining) {
                    (_, true) => "draining",
                    (true, false) => "ready",
                    (false, false) => "not ready",
                }
                .to_string(),
                format!(
                    "{:.1} (+{:.1} waiting) / {:.1} GB",
                    n.allocated_gb, n.waiting_gb, n.memory_gb
                ),
                n.servers.to_string(),
                match &n.cloud {
                    Some(c) => format!("#{} {:.4} EUR/h", c.id, c.hourly_price),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    table(["NODE", "STATE", "MEMORY", "SERVERS", "CLOUD"], &rows);
    for d in &v.decisions {
        println!(
            "{}  {}",
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_millis(d.at_unix_ms)
            ),
            d.line
        );
    }
    Ok(())
}

/// `warden consolidate [--dry-run]`: the plan, and whether its drain started.
pub fn consolidate(client: &Client, dry_run: bool) -> anyhow::Result<()> {
    let p = client.call(
        reqwest::Method::POST,
        "/v1/fleet/consolidate",
        Some(&json!({ "dry_run": dry_run })),
    )?;
    println!("{}", text(&p["why"]));
    for m in p["moves"].as_array().into_iter().flatten() {
        println!(
            "  {}: {} -> {}",
            text(&m["server"]),
            text(&m["from"]),
            text(&m["to"])
        );
    }
    match (p["node"].as_str(), p["started"].as_bool()) {
        (Some(n), Some(true)) => println!("draining {n}; `warden nodes` shows it empty when done"),
        (Some(_), _) => println!("dry run: nothing was changed"),
        _ => {}
    }
    Ok(())
}

/// `warden gc [--dry-run]`: every orphan found, and what was done with it.
pub fn gc(client: &Client, dry_run: bool) -> anyhow::Result<()> {
    let r = client.call(
        reqwest::Method::POST,
        "/v1/fleet/gc",
        Some(&json!({ "dry_run": dry_run })),
    )?;
    let rows: Vec<[String; 5]> = r["orphans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            [
                text(&o["kind"]),
                text(&o["what"]),
                o["bytes"].as_u64().unwrap_or(0).to_string(),
                o["age_secs"]
                    .as_u64()
                    .map_or("?".into(), |a| format!("{a}s")),
                match o["deleted"].as_bool() {
                    Some(true) => "deleted".into(),
                    _ => format!("kept: {}", text(&o["kept"])),
                },
            ]
        })
        .collect();
    table(["KIND", "WHAT", "BYTES", "AGE", "DONE"], &rows);
    println!(
        "{} orphan(s), {} deleted ({} bytes){}",
        rows.len(),
        r["deleted"].as_u64().unwrap_or(0),
        r["bytes_deleted"].as_u64().unwrap_or(0),
        if dry_run { "; dry run" } else { "" }
    );
    Ok(())
}

/// `warden node cordon|drain|uncordon NODE`.
pub fn node_action(client: &Client, action: &str, id: &str) -> anyhow::Result<()> {
    let n = client.call(
        reqwest::Method::POST,
        &format!("/v1/nodes/{id}/{action}"),
        None,
    )?;
    println!("{id}: {}", text(&n["state"]));
    Ok(())
}

/// `warden wake|sleep|archive|restore|restart|migrate|backup ID`: starts the action and, unless
/// `no_wait`, follows it to its end. Fails if the action fails.
pub fn action(client: &Client, command: &Command, id: &str, no_wait: bool) -> anyhow::Result<()> {
    let action = command.action().as_str();
    let body = match command {
        Command::Sleep { force } => json!({ "force": force }),
        Command::Restart { image } => json!({ "image": image }),
        Command::Migrate { to } => json!({ "to": to }),
        Command::RestoreBackup { backup } => json!({ "backup": backup }),
        Command::Wake | Command::Archive | Command::Restore | Command::Backup => json!({}),
    };
    let started = client.call(
        reqwest::Method::POST,
        &format!("/v1/servers/{id}/actions/{action}"),
        Some(&body),
    )?;
    let action_id = text(&started["id"]);
    if no_wait {
        println!("{action} {id}: started as {action_id}");
        return Ok(());
    }
    loop {
        let a = client.call(
            reqwest::Method::GET,
            &format!("/v1/actions/{action_id}"),
            None,
        )?;
        match a["progress"].as_str() {
            Some("running") => std::thread::sleep(Duration::from_millis(250)),
            Some("succeeded") => {
                println!("{action} {id}: {}", text(&a["message"]));
                return Ok(());
            }
            _ => bail!("{action} {id} failed: {}", text(&a["message"])),
        }
    }
}

/// `warden backups ID`: one line per backup, newest first.
pub fn backups(client: &Client, id: &str, verify: bool, json: bool) -> anyhow::Result<()> {
    let list = client.call(
        reqwest::Method::GET,
        &format!("/v1/servers/{id}/backups?verify={verify}"),
        None,
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let mib = |v: &Value| {
        v.as_u64()
            .map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
    };
    let rows: Vec<[String; 7]> = list
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|b| {
            [
                text(&b["id"]),
                b["created_unix_ms"].as_u64().map_or("-".into(), |ms| {
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + Duration::from_millis(ms),
                    )
                    .to_string()
                }),
                text(&b["files"]),
                mib(&b["bytes"]),
                mib(&b["new_bytes"]),
                match (b["verified"].as_bool(), b["problem"].as_str()) {
                    (Some(true), _) => "yes".into(),
                    (_, Some(why)) => format!("NO: {why}"),
                    _ => "no".into(),
                },
                text(&b["note"]),
            ]
        })
        .collect();
    table(
        [
            "BACKUP", "CREATED", "FILES", "SIZE", "NEW", "VERIFIED", "NOTE",
        ],
        &rows,
    );
    Ok(())
}

fn print_event(e: &Value) {
    let line = match e["kind"].as_str() {
        Some("transition") => format!(
            "{} {} → {} ({})",
            text(&e["server"]),
            e["from"].as_str().unwrap_or("new"),
            text(&e["to"]),
            text(&e["reason"])
        ),
        Some(kind) => format!("{} {kind} {}", text(&e["server"]), text(&e["player"])),
        None => e.to_string(),
    };
    let at = e["at_unix_ms"].as_u64().map_or_else(
        || text(&e["at_unix_ms"]),
        |ms| {
            let t = std::time::UNIX_EPOCH + Duration::from_millis(ms);
            humantime::format_rfc3339_millis(t).to_string()
        },
    );
    println!("{at} {line}");
}

/// `warden events [--follow]`.
pub fn events(
    client: &Client,
    server: Option<&str>,
    limit: usize,
    follow: bool,
) -> anyhow::Result<()> {
    let filter = server.map(|s| format!("server={s}&")).unwrap_or_default();
    if !follow {
        let list = client.call(
            reqwest::Method::GET,
            &format!("/v1/events?{filter}limit={limit}"),
            None,
        )?;
        for e in list.as_array().map(|a| a.as_slice()).unwrap_or_default() {
            print_event(e);
        }
        return Ok(());
    }
    let resp = client.send(
        reqwest::Method::GET,
        &format!("/v1/events/stream?{}", filter.trim_end_matches('&')),
        None,
        None,
    )?;
    for line in BufReader::new(resp).lines() {
        let line = line.context("reading the event stream")?;
        if let Some(data) = line.strip_prefix("data:") {
            if let Ok(e) = serde_json::from_str::<Value>(data.trim()) {
                print_event(&e);
            }
        }
    }
    bail!("the event stream ended (the appliance stopped?)")
}

/// `warden token list`.
pub fn token_list(client: &Client) -> anyhow::Result<()> {
    let list = client.call(reqwest::Method::GET, "/v1/tokens", None)?;
    println!("{:<14}  {:<8}  NAME", "ID", "ROLE");
    for t in list.as_array().map(|a| a.as_slice()).unwrap_or_default() {
        println!(
            "{:<14}  {:<8}  {}",
            text(&t["id"]),
            text(&t["role"]),
            text(&t["name"])
        );
    }
    Ok(())
}
