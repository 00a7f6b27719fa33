//! The anteroom against a real client library: node-minecraft-protocol players
//! (tests/peers/transfer-player.js) for every nmp version from 1.20.5 on (protocol 766+).
//!
//! The test plays the proxy: it accepts, reads handshake + Login Start with warden_wire and
//! hands the connection to `Anteroom::hold`, then flips the status channel.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::{accept_guest, dest, settings, KEY};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::{watch, Semaphore};
use warden_anteroom::{offline_uuid, Anteroom, Outcome, WaitStatus, Waiting};
use warden_testkit::{node_json, peers_dir};
use warden_wire::Intent;

/// How many node players run at once (each compiles nmp's protocol code first).
const PARALLEL: usize = 3;

/// (version, protocol) for every nmp-supported version with protocol ≥ 766.
fn versions() -> Vec<(String, i32)> {
    let list: Vec<(String, i32)> = node_json(
        "const mc = require('minecraft-protocol'); const md = require('minecraft-data');\
        console.log(JSON.stringify(mc.supportedVersions\
          .map(v => [v, (md.versionsByMinecraftVersion.pc[v] || md(v).version).version])\
          .filter(([, p]) => p >= 766)))",
    );
    assert!(!list.is_empty());
    list
}

/// What the player printed, and what the hold returned.
struct Run {
    player: Value,
    outcome: Outcome,
}

/// Runs one player against one hold; `script` drives the status channel.
async fn run_player<F, Fut>(version: &str, protocol: i32, intent: Intent, script: F) -> Run
where
    F: FnOnce(watch::Sender<WaitStatus>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let name = format!("p{}", version.replace('.', "_"));
    let child = Command::new("node")
        .arg("transfer-player.js")
        .args(["127.0.0.1", &port.to_string(), version, &name, "60"])
        .arg((intent as i32).to_string())
        .current_dir(peers_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn transfer-player.js");

    let (guest, handshake) = accept_guest(&listener).await;
    assert_eq!(
        handshake.protocol, protocol,
        "{version}: handshake protocol"
    );
    assert_eq!(handshake.intent, intent, "{version}: handshake intent");
    assert_eq!(guest.name, name);
    assert_eq!(
        guest.uuid,
        Some(offline_uuid(&name)),
        "{version}: nmp's offline UUID matches ours"
    );
    let (tx, rx) = watch::channel(WaitStatus::Waiting {
        why: Waiting::Waking,
        eta: Some(Duration::from_secs(40)),
    });
    tokio::spawn(script(tx));
    let anteroom = Anteroom::new(settings());
    let outcome = tokio::time::timeout(Duration::from_secs(60), anteroom.hold(guest, dest(), rx))
        .await
        .expect("hold ends");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("player exits")
        .expect("player output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let player = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{version}: no JSON from the player; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    Run { player, outcome }
}

/// Waiting (ETA 40 s) → waiting (ETA 5 s) after 1 s → Ready after 2 s.
async fn ready_after_two_seconds(tx: watch::Sender<WaitStatus>) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = tx.send(WaitStatus::Waiting {
        why: Waiting::Waking,
        eta: Some(Duration::from_secs(5)),
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = tx.send(WaitStatus::Ready);
    tokio::time::sleep(Duration::from_secs(30)).await;
}

fn check_transfer(version: &str, protocol: i32, run: &Run) -> Result<(), String> {
    let p = &run.player;
    eprintln!("{version}: {:?}, player printed {p}", run.outcome);
    if run.outcome != Outcome::Transferred || p["event"] != "transfer" {
        return Err(format!("{version}: outcome {:?}, player {p}", run.outcome));
    }
    if p["host"] != "play.example.com" || p["port"] != 25599 {
        return Err(format!(
            "{version}: transferred to {}:{}",
            p["host"], p["port"]
        ));
    }
    let cookie = p["cookie"]
        .as_str()
        .ok_or(format!("{version}: no cookie: {p}"))?;
    let cookie = hex::decode(cookie).map_err(|e| format!("{version}: cookie hex: {e}"))?;
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let server = warden_wire::ticket::verify(KEY, &cookie, ip, SystemTime::now())
        .map_err(|e| format!("{version}: ticket: {e}"))?;
    if server != "survival" {
        return Err(format!("{version}: ticket names {server}"));
    }
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    if warden_wire::ticket::verify(KEY, &cookie, other, SystemTime::now()).is_ok() {
        return Err(format!("{version}: ticket accepted from another address"));
    }
    if p["keepalives"].as_u64().unwrap_or(0) < 2 {
        return Err(format!("{version}: too few keep-alives: {p}"));
    }
    let dialogs = p["dialogs"].as_array().map_or(0, Vec::len);
    let want = if protocol >= 771 { 2 } else { 0 };
    if dialogs != want {
        return Err(format!("{version}: {dialogs} dialogs, want {want}: {p}"));
    }
    if want > 0 {
        let d = &p["dialogs"][1];
        let ok = d["type"] == "minecraft:notice"
            && d["title"]["text"] == "Survival SMP"
            && d["body"][1]["contents"]["text"] == "About 5 seconds left.";
        if !ok {
            return Err(format!("{version}: dialog as nmp parsed it: {d}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmp_players_are_transferred_with_a_valid_ticket() {
    let versions = versions();
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = Vec::new();
    for (version, protocol) in versions.clone() {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            let run = run_player(&version, protocol, Intent::Login, ready_after_two_seconds).await;
            check_transfer(&version, protocol, &run)
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.expect("player task") {
            failures.push(e);
        }
    }
    let names: Vec<_> = versions.iter().map(|(v, p)| format!("{v} ({p})")).collect();
    eprintln!("versions: {}", names.join(", "));
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmp_player_returning_with_intent_3_is_held_too() {
    let (version, protocol) = versions().pop().expect("newest version");
    let run = run_player(
        &version,
        protocol,
        Intent::Transfer,
        ready_after_two_seconds,
    )
    .await;
    check_transfer(&version, protocol, &run).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nmp_players_see_the_failure_reason() {
    // The oldest and the newest version (before and after dialogs); both take an NBT reason.
    let all = versions();
    let picks = [all[0].clone(), all[all.len() - 1].clone()];
    for (version, protocol) in picks {
        let run = run_player(&version, protocol, Intent::Login, |tx| async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = tx.send(WaitStatus::Failed("boom".into()));
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await;
        assert_eq!(run.outcome, Outcome::Failed("boom".into()), "{version}");
        let p = &run.player;
        assert_eq!(p["event"], "kicked", "{version}: {p}");
        assert_eq!(p["state"], "configuration", "{version}: {p}");
        let reason = p["reason"].to_string();
        assert!(reason.contains("boom"), "{version}: {reason}");
    }
}
