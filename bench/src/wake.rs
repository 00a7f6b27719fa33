//! The `wake` command: how much longer than the server's own start a waking join takes.
//!
//! Warden manages this bench binary as a *process* server (`warden-bench backend --events
//! FILE`), puts it to sleep after one idle second, and wakes it for each join. The backend
//! writes when it started listening (the moment it was ready) and when a login arrived.
//! The gap between the two is Warden's wake overhead. Rounds alternate between the two ways
//! a joining player waits:
//! * the hold (1.20.4, protocol 765): noticing readiness plus replaying the handshake;
//! * the anteroom (1.21, protocol 767): the player is logged in by Warden, and on readiness
//!   gets a ticket cookie and a Transfer; the bench follows it like a vanilla client
//!   (reconnect with intent 3, answer the Cookie Request), so the gap includes that round
//!   trip.
//!
//! lazymc polls readiness every 2 s; the target is ≤ 200 ms.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::proto::{connect, read_frame, read_some, write_all, Target, IO_TIMEOUT};
use crate::warden::{free_port, unique_dir, Warden};
use warden_wire::{FrameDecoder, Intent, PacketReader, PacketWriter};

const HOST: &str = "wake.test";

#[derive(Serialize, Debug, Default)]
pub struct WakeReport {
    pub rounds: usize,
    /// Backend listening → the held player's Login Start arriving at it, per round.
    pub hold_overhead_ms: Vec<f64>,
    /// The player's whole join, from connect to the backend's first byte, per round.
    pub hold_join_ms: Vec<f64>,
    /// The same two through the anteroom (Transfer and ticket included).
    pub anteroom_overhead_ms: Vec<f64>,
    pub anteroom_join_ms: Vec<f64>,
    /// For scale: a login to the already-running server through Warden.
    pub warm_join_ms: f64,
}

/// Protocols of the two paths.
const HOLD_PROTOCOL: i32 = 765;
const ANTEROOM_PROTOCOL: i32 = 767;

pub async fn run(bin: &Path, rounds: usize, json: Option<PathBuf>) -> Result<()> {
    let exe = std::env::current_exe().context("locating warden-bench")?;
    let dir = unique_dir()?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let events = dir.join("backend-events.log");
    let backend: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let command = [
        exe.display().to_string(),
        "backend".into(),
        "--listen".into(),
        backend.to_string(),
        "--events".into(),
        events.display().to_string(),
    ];
    let warden = Warden::start_with(bin, dir.clone(), HOST, |listen, dir| {
        config(listen, dir, backend, &command, &data)
    })
    .await?;
    let target = warden.target();

    let mut report = WakeReport {
        rounds,
        ..WakeReport::default()
    };
    for round in 0..rounds {
        asleep(backend).await?;
        let seen = lines(&events)?.len();
        let through_anteroom = round % 2 == 1;
        let t0 = Instant::now();
        let joined = if through_anteroom {
            join_via_anteroom(&target).await
        } else {
            join(&target, HOLD_PROTOCOL).await
        };
        joined.with_context(|| format!("round {round}: waking join"))?;
        let join_time = t0.elapsed();
        if round == 0 {
            let t1 = Instant::now();
            join(&target, HOLD_PROTOCOL).await?;
            report.warm_join_ms = ms(t1.elapsed());
        }
        let new = lines(&events)?.split_off(seen);
        let listening = stamp(&new, "listening").context("the backend never logged listening")?;
        let login = new
            .iter()
            .filter_map(|l| l.strip_prefix("login ")?.parse::<u128>().ok())
            .find(|&t| t >= listening)
            .context("the held login never reached the backend")?;
        let overhead = Duration::from_nanos((login - listening) as u64);
        let path = if through_anteroom { "anteroom" } else { "hold" };
        eprintln!(
            "[wake] round {round} ({path}): join {:.0} ms, overhead {:.1} ms",
            ms(join_time),
            ms(overhead)
        );
        if through_anteroom {
            report.anteroom_overhead_ms.push(ms(overhead));
            report.anteroom_join_ms.push(ms(join_time));
        } else {
            report.hold_overhead_ms.push(ms(overhead));
            report.hold_join_ms.push(ms(join_time));
        }
    }
    print_table(&report);
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    drop(warden);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn config(
    listen: SocketAddr,
    dir: &Path,
    backend: SocketAddr,
    command: &[String],
    data: &Path,
) -> String {
    let command = command
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[edge]
listen = "{listen}"
upgrade_sock = "{d}/upgrade.sock"
grace_period = "2s"

[metrics]
listen = ""

[store]
path = "{d}/store"

[archive]
path = "{d}/archive"

[[servers]]
id = "wake"
hosts = ["{HOST}"]
backend = "{backend}"
sleep_after = "1s"
start_timeout = "30s"
stop_timeout = "5s"
runtime = {{ kind = "process", command = [{command}], dir = "{data}" }}
"#,
        d = dir.display(),
        data = data.display(),
    )
}

/// Waits until the backend process is gone and Warden has had a moment to record it, so
/// every round is a full wake from sleep.
async fn asleep(backend: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(backend).await.is_ok() {
        if Instant::now() > deadline {
            bail!("the server never went to sleep");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(())
}

fn lines(path: &Path) -> Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

fn stamp(lines: &[String], what: &str) -> Option<u128> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(what)?.trim().parse().ok())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_table(r: &WakeReport) {
    let stats = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let median = s.get(s.len() / 2).copied().unwrap_or(0.0);
        (median, s.last().copied().unwrap_or(0.0))
    };
    println!("| wake ({} rounds) | median | max |", r.rounds);
    println!("|---|---:|---:|");
    for (what, o, j) in [
        ("hold, 1.20.4", &r.hold_overhead_ms, &r.hold_join_ms),
        (
            "anteroom, 1.21",
            &r.anteroom_overhead_ms,
            &r.anteroom_join_ms,
        ),
    ] {
        let (om, ox) = stats(o);
        let (jm, jx) = stats(j);
        println!("| {what}: backend ready → login arrives (ms) | {om:.1} | {ox:.1} |");
        println!("| {what}: whole waking join (ms) | {jm:.0} | {jx:.0} |");
    }
    println!(
        "| join to the running server, for scale (ms) | {:.1} | |",
        r.warm_join_ms
    );
}

/// A plain join: handshake + Login Start (name `ack`), then the backend's one-byte answer.
async fn join(t: &Target, protocol: i32) -> Result<()> {
    let mut s = connect(t.addr).await?;
    let prefix = t.join_prefix("ack", protocol, Intent::Login, &t.host, t.addr.port());
    write_all(&mut s, &prefix, IO_TIMEOUT).await?;
    let mut b = [0u8; 1];
    read_some(&mut s, &mut b, IO_TIMEOUT).await?;
    Ok(())
}

/// Login and configuration ids used here (766+, stable across 766–776).
const LOGIN_SUCCESS: i32 = 0x02;
const LOGIN_ACKNOWLEDGED: i32 = 0x03;
const COOKIE_REQUEST: i32 = 0x05;
const COOKIE_RESPONSE: i32 = 0x04;
const KEEP_ALIVE: i32 = 0x04;
const STORE_COOKIE: i32 = 0x0A;
const TRANSFER: i32 = 0x0B;

/// A 1.21 client's join to a sleeping server: the anteroom, its Transfer, and the return
/// with the ticket, until the backend's first byte.
async fn join_via_anteroom(t: &Target) -> Result<()> {
    let mut s = connect(t.addr).await?;
    let prefix = t.join_prefix(
        "ack",
        ANTEROOM_PROTOCOL,
        Intent::Login,
        &t.host,
        t.addr.port(),
    );
    write_all(&mut s, &prefix, IO_TIMEOUT).await?;
    let mut dec = FrameDecoder::new();
    let first = read_frame(&mut s, &mut dec, IO_TIMEOUT).await?;
    let id = PacketReader::new(&first).varint()?;
    anyhow::ensure!(id == LOGIN_SUCCESS, "expected Login Success, got {id:#x}");
    write_all(
        &mut s,
        &PacketWriter::new(LOGIN_ACKNOWLEDGED).into_frame(),
        IO_TIMEOUT,
    )
    .await?;
    let mut cookie: Option<(String, Vec<u8>)> = None;
    let (host, port) = loop {
        let frame = read_frame(&mut s, &mut dec, Duration::from_secs(30)).await?;
        let mut r = PacketReader::new(&frame);
        match r.varint()? {
            KEEP_ALIVE => {
                let v = r.i64()?;
                let pong = PacketWriter::new(KEEP_ALIVE).i64(v).into_frame();
                write_all(&mut s, &pong, IO_TIMEOUT).await?;
            }
            STORE_COOKIE => {
                let key = r.string(256)?.to_string();
                cookie = Some((key, r.byte_array(5120)?.to_vec()));
            }
            TRANSFER => break (r.string(255)?.to_string(), r.varint()?),
            _ => {}
        }
    };
    drop(s);
    let (key, ticket) = cookie.context("Transfer without a ticket cookie")?;
    let port = u16::try_from(port).context("Transfer port")?;
    let mut s = connect(t.addr).await?;
    let prefix = t.join_prefix("ack", ANTEROOM_PROTOCOL, Intent::Transfer, &host, port);
    write_all(&mut s, &prefix, IO_TIMEOUT).await?;
    let mut dec = FrameDecoder::new();
    let request = read_frame(&mut s, &mut dec, IO_TIMEOUT).await?;
    let id = PacketReader::new(&request).varint()?;
    anyhow::ensure!(id == COOKIE_REQUEST, "expected Cookie Request, got {id:#x}");
    let mut answer = PacketWriter::new(COOKIE_RESPONSE).string(&key).raw(&[1]);
    let mut len = Vec::new();
    warden_wire::write_varint(&mut len, ticket.len() as i32);
    answer = answer.raw(&len).raw(&ticket);
    write_all(&mut s, &answer.into_frame(), IO_TIMEOUT).await?;
    let mut b = [0u8; 1];
    read_some(&mut s, &mut b, IO_TIMEOUT).await?;
    Ok(())
}
