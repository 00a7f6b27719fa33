//! `warden-bench link`: the edge↔node QUIC link against a TCP relay over the same delay,
//! in one process and one run. Both paths carry a player the way Warden does: player TCP →
//! edge → (a stream on the warm link | a new TCP connection) → node → backend TCP. The
//! link's ends are Warden's own (`warden-link`: dialer, listener, pipe, mTLS from a fresh
//! CA); the delay comes from the test kit's relays (UDP for the link, TCP for the other
//! path), since the kernel here has no netem.
//!
//! Figures: join (connect to first echoed byte, new connection each time, link warm),
//! echo round trips on an established session, bulk upload MiB/s, CPU seconds per GiB,
//! heap per idle session at `--sessions` sessions, and heap per stream of the link itself
//! at `--streams` streams (delay 0 for the last three).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use quinn::{RecvStream, SendStream};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warden_link::dial::Dialer;
use warden_link::listen::{Land, Listener};
use warden_link::metrics::LinkMetrics;
use warden_link::pipe::pipe;
use warden_link::pki::{self, Role};
use warden_link::tls::{Material, Tls};
use warden_wire::link::{Open, Reply, ReplyCode};

#[derive(clap::Args)]
pub struct LinkArgs {
    /// One-way delay between edge and node, ms.
    #[arg(long, default_value_t = 20)]
    pub delay_ms: u64,
    /// Joins and echo round trips per path.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Bulk upload per path, MiB.
    #[arg(long, default_value_t = 256)]
    pub bulk_mib: usize,
    /// Idle sessions (player → edge → node → backend) held at once for the memory figure;
    /// each costs file descriptors on every hop, all in this process.
    #[arg(long, default_value_t = 4_000)]
    pub sessions: usize,
    /// Idle streams held at once on one link for the per-stream figure (no sockets).
    #[arg(long, default_value_t = 10_000)]
    pub streams: usize,
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// The backends: `echo` writes back what it reads; `sink` reads to the end, then answers
/// one byte.
async fn backends() -> Result<(SocketAddr, SocketAddr)> {
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let sink = TcpListener::bind("127.0.0.1:0").await?;
    let (e, s) = (echo.local_addr()?, sink.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut c, _)) = echo.accept().await {
            let _ = c.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = c.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    tokio::spawn(async move {
        while let Ok((mut c, _)) = sink.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = c.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                let _ = c.write_all(b"!").await;
            });
        }
    });
    Ok((e, s))
}

/// The node's end: connects the backend the stream names and pipes.
struct Node {
    echo: SocketAddr,
    sink: SocketAddr,
}

#[async_trait::async_trait]
impl Land for Node {
    async fn land(&self, _edge: SocketAddr, open: Open, mut send: SendStream, recv: RecvStream) {
        if open.server == "hold" {
            // A stream and nothing else (no backend socket): what the link itself costs.
            let mut recv = recv;
            if send.write_all(&Reply::connected().encode()).await.is_ok() {
                let mut b = [0u8; 1];
                let _ = recv.read(&mut b).await;
            }
            return;
        }
        let to = if open.server == "sink" {
            self.sink
        } else {
            self.echo
        };
        let Ok(mut backend) = TcpStream::connect(to).await else {
            let r = Reply {
                code: ReplyCode::Unreachable,
                reason: "backend".into(),
            };
            let _ = send.write_all(&r.encode()).await;
            return;
        };
        let _ = backend.set_nodelay(true);
        if backend.write_all(&open.join).await.is_err() {
            return;
        }
        if send.write_all(&Reply::connected().encode()).await.is_err() {
            return;
        }
        let c = prometheus::IntCounter::new("x", "x").ok();
        let Some(c) = c else { return };
        let _ = pipe(&mut backend, send, recv, Duration::from_secs(600), &c, &c).await;
    }
}

/// An edge: a TCP listener whose players go to `server` over the link, or over TCP to
/// `tcp_to` when there is no dialer.
async fn edge(
    dialer: Option<(Arc<Dialer>, String)>,
    server: &'static str,
    tcp_to: SocketAddr,
) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut client, peer)) = l.accept().await {
            let _ = client.set_nodelay(true);
            let dialer = dialer.clone();
            tokio::spawn(async move {
                match dialer {
                    Some((d, at)) => {
                        // Like Warden, which has read the handshake and Login Start before
                        // it routes: the player's first bytes ride in the Open frame.
                        let mut first = vec![0u8; 4096];
                        let Ok(n) = client.read(&mut first).await else {
                            return;
                        };
                        first.truncate(n);
                        let Ok((mut send, mut recv)) = d.open("node", &at).await else {
                            return;
                        };
                        let open = Open {
                            server: server.into(),
                            player: peer,
                            join: bytes::Bytes::from(first),
                        };
                        let Ok(frame) = open.encode() else { return };
                        if send.write_all(&frame).await.is_err() {
                            return;
                        }
                        let mut head = [0u8; 3];
                        if recv.read_exact(&mut head).await.is_err() {
                            return;
                        }
                        let Ok(c) = prometheus::IntCounter::new("x", "x") else {
                            return;
                        };
                        let _ =
                            pipe(&mut client, send, recv, Duration::from_secs(600), &c, &c).await;
                    }
                    None => {
                        let Ok(mut b) = TcpStream::connect(tcp_to).await else {
                            return;
                        };
                        let _ = b.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut b).await;
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn joins(edge: SocketAddr, n: usize) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut c = TcpStream::connect(edge).await?;
        c.set_nodelay(true)?;
        c.write_all(b"j").await?;
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.context("join echo")?;
        out.push(t.elapsed());
    }
    Ok(out)
}

async fn echoes(edge: SocketAddr, n: usize) -> Result<Vec<Duration>> {
    let mut c = TcpStream::connect(edge).await?;
    c.set_nodelay(true)?;
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.write_all(&msg).await?;
        c.read_exact(&mut back).await.context("echo")?;
        out.push(t.elapsed());
    }
    Ok(out)
}

/// MiB/s and CPU seconds per GiB (this whole process: player, edge, node and backend).
async fn bulk(edge: SocketAddr, mib: usize) -> Result<(f64, f64)> {
    let cpu0 = cpu_secs();
    let t = Instant::now();
    let mut c = TcpStream::connect(edge).await?;
    let chunk = vec![1u8; 64 * 1024];
    for _ in 0..mib * 16 {
        c.write_all(&chunk).await?;
    }
    c.shutdown().await?;
    let mut b = [0u8; 1];
    c.read_exact(&mut b).await.context("bulk done")?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    Ok((mib as f64 / secs, cpu / (mib as f64 / 1024.0)))
}

/// KiB of heap per idle session (everything in this process: player, edge, node and
/// backend ends; the same for both paths but the path itself), `n` sessions at once.
async fn memory(edge: SocketAddr, n: usize) -> Result<f64> {
    let before = crate::alloc::live_bytes() as f64 / 1024.0;
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = TcpStream::connect(edge)
            .await
            .with_context(|| format!("session {}", held.len()))?;
        c.write_all(b"m").await?;
        let mut b = [0u8; 1];
        c.read_exact(&mut b)
            .await
            .with_context(|| format!("session {}", held.len()))?;
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per = (crate::alloc::live_bytes() as f64 / 1024.0 - before) / n as f64;
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(per)
}

/// KiB of heap per open stream on one warm link, both ends (this process holds both), `n`
/// streams at once: each opened with an Open frame, answered, then idle. No TCP socket is
/// involved, so `n` is not limited by file descriptors.
async fn streams(dialer: &Arc<Dialer>, at: &str, n: usize) -> Result<f64> {
    let before = crate::alloc::live_bytes() as f64 / 1024.0;
    let open = Open {
        server: "hold".into(),
        player: "127.0.0.1:1".parse()?,
        join: bytes::Bytes::from_static(b"join"),
    }
    .encode()?;
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let (mut send, mut recv) = dialer
            .open("node", at)
            .await
            .with_context(|| format!("stream {i}"))?;
        send.write_all(&open).await?;
        let mut head = [0u8; 3];
        recv.read_exact(&mut head)
            .await
            .with_context(|| format!("stream {i}'s reply"))?;
        held.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per = (crate::alloc::live_bytes() as f64 / 1024.0 - before) / n as f64;
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(per)
}

fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// One setup: a node (listener) behind a UDP relay, a TCP relay to the backends, and an
/// edge for each path and backend.
struct Setup {
    dialer: Arc<Dialer>,
    link_at: String,
    link_echo: SocketAddr,
    link_sink: SocketAddr,
    tcp_echo: SocketAddr,
    tcp_sink: SocketAddr,
    _relays: Vec<warden_testkit::delay::Relay>,
}

async fn setup(dir: &std::path::Path, one_way: Duration) -> Result<Setup> {
    let (echo, sink) = backends().await?;
    let ca = dir.join("ca");
    if !ca.join(pki::CA_KEY).exists() {
        pki::init_ca(&ca, "bench")?;
        pki::issue(&ca, Role::Node, "node", &dir.join("node"), 1)?;
        pki::issue(&ca, Role::Edge, "edge", &dir.join("edge"), 1)?;
    }
    let material = |id: &str| Material {
        ca: dir.join(id).join("ca.crt"),
        cert: dir.join(id).join(format!("{id}.crt")),
        key: dir.join(id).join(format!("{id}.key")),
        crl: None,
    };
    let listener = Listener::bind(
        "127.0.0.1:0".parse()?,
        &Tls::load(&material("node"))?,
        LinkMetrics::new()?,
    )?;
    let node_at = listener.local_addr()?;
    tokio::spawn(listener.run(Arc::new(Node { echo, sink })));
    let mut relays = Vec::new();
    let (link_at, echo_at, sink_at) = if one_way.is_zero() {
        (node_at, echo, sink)
    } else {
        let u = warden_testkit::delay::udp("127.0.0.1:0".parse()?, node_at, one_way, 0.0);
        let e = warden_testkit::delay::tcp("127.0.0.1:0".parse()?, echo, one_way);
        let s = warden_testkit::delay::tcp("127.0.0.1:0".parse()?, sink, one_way);
        let at = (u.listen, e.listen, s.listen);
        relays.extend([u, e, s]);
        at
    };
    let dialer = Dialer::new(&Tls::load(&material("edge"))?, LinkMetrics::new()?)?;
    let link = Some((dialer.clone(), link_at.to_string()));
    dialer.keep(&[("node".to_string(), link_at.to_string())]);
    for _ in 0..100 {
        if dialer.is_up("node") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Setup {
        dialer,
        link_at: link_at.to_string(),
        link_echo: edge(link.clone(), "echo", echo_at).await?,
        link_sink: edge(link, "sink", sink_at).await?,
        tcp_echo: edge(None, "echo", echo_at).await?,
        tcp_sink: edge(None, "sink", sink_at).await?,
        _relays: relays,
    })
}

pub async fn run(a: LinkArgs) -> Result<()> {
    crate::sys::raise_nofile((a.sessions as u64) * 6 + 1024)?;
    let dir = crate::warden::unique_dir()?;
    let one_way = Duration::from_millis(a.delay_ms);
    let s = setup(&dir, one_way).await?;
    // Warm both paths once.
    joins(s.link_echo, 3).await?;
    joins(s.tcp_echo, 3).await?;
    let (mut lj, mut tj) = (Vec::new(), Vec::new());
    for _ in 0..a.samples / 10 {
        lj.extend(joins(s.link_echo, 10).await?);
        tj.extend(joins(s.tcp_echo, 10).await?);
    }
    let mut le = echoes(s.link_echo, a.samples).await?;
    let mut te = echoes(s.tcp_echo, a.samples).await?;
    let (lb, _) = bulk(s.link_sink, a.bulk_mib).await?;
    let (tb, _) = bulk(s.tcp_sink, a.bulk_mib).await?;
    drop(s);
    // Without delay: what the paths cost the machine.
    let z = setup(&dir, Duration::ZERO).await?;
    let (lb0, lcpu) = bulk(z.link_sink, a.bulk_mib).await?;
    let (tb0, tcpu) = bulk(z.tcp_sink, a.bulk_mib).await?;
    eprintln!("[link] heap per session, {} sessions", a.sessions);
    let lmem = memory(z.link_echo, a.sessions)
        .await
        .context("sessions over the link")?;
    let tmem = memory(z.tcp_echo, a.sessions)
        .await
        .context("sessions over TCP")?;
    eprintln!("[link] heap per stream, {} streams on one link", a.streams);
    let smem = streams(&z.dialer, &z.link_at, a.streams)
        .await
        .context("streams on the link")?;
    let rtt = 2.0 * one_way.as_secs_f64() * 1000.0;
    let report = json!({
        "one_way_ms": a.delay_ms,
        "rtt_ms": rtt,
        "join_ms": {"link": {"p50": pct(&mut lj, 0.5), "p99": pct(&mut lj, 0.99)},
                    "tcp": {"p50": pct(&mut tj, 0.5), "p99": pct(&mut tj, 0.99)}},
        "echo_ms": {"link": {"p50": pct(&mut le, 0.5), "p99": pct(&mut le, 0.99)},
                    "tcp": {"p50": pct(&mut te, 0.5), "p99": pct(&mut te, 0.99)}},
        "bulk_mib_s_delayed": {"link": lb, "tcp": tb},
        "bulk_mib_s_no_delay": {"link": lb0, "tcp": tb0},
        "cpu_s_per_gib_no_delay": {"link": lcpu, "tcp": tcpu},
        "heap_kib_per_session": {"link": lmem, "tcp": tmem, "sessions": a.sessions},
        "heap_kib_per_link_stream": {"both_ends": smem, "streams": a.streams},
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(p) = a.json {
        std::fs::write(&p, &text).with_context(|| format!("writing {}", p.display()))?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
