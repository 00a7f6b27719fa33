//! Issue 12, findings 2 and 8, against the real binary: nobody can lock the control API or
//! the metrics listener with open sockets (idle floods, trickled heads and bodies, one
//! token's event streams), and a revoked token's open streams end at once on every
//! appliance sharing the store. Clients are spread over 127.0.0.0/8 source addresses.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_tests::*;

/// The defaults: `request_timeout` and `idle_timeout` are 10 s.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long past a deadline a cut may take before a test calls it missing.
const SLACK: Duration = Duration::from_secs(5);

/// An appliance with the API on its defaults and a plain server.
fn appliance(name: &str) -> Warden {
    let rest = stores_in(std::path::Path::new("{dir}"))
        + &server("lobby", "lobby.test", "127.0.0.1:1")
        + API;
    let w = Warden::start(name, &config("", None, &rest));
    assert!(
        wait_listening(w.api_addr(), Duration::from_secs(20)),
        "API not listening\n{}",
        w.log()
    );
    w
}

fn ip(a: u8, b: u8, c: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, a, b, c)
}

/// Sends `head` (a request head, `\r\n\r\n` included) from `src` and reads the answer's
/// head: (status, head and as much body as came within a second). Status 0 if the
/// connection failed or nothing came.
fn exchange_from(src: Ipv4Addr, addr: SocketAddr, head: &str) -> (u16, String, Option<TcpStream>) {
    let Ok(mut s) = connect_from(src, addr, Duration::from_secs(2)) else {
        return (0, String::new(), None);
    };
    if s.write_all(head.as_bytes()).is_err() {
        return (0, String::new(), None);
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 64 * 1024 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.windows(4).any(|w| w == b"\r\n\r\n") {
            // The head is in; take what of the body follows at once.
            let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
        }
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    (status, text, Some(s))
}

/// `GET path` from `src` with `Connection: close`: the status (0 for no answer).
fn get_from(src: Ipv4Addr, addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n");
    exchange_from(src, addr, &head).0
}

/// Keeps `count` idle connections to `addr` open from `sources` addresses (spread evenly),
/// reopening any the server closes, until dropped.
struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Flood {
    fn start(addr: SocketAddr, count: usize, sources: &[Ipv4Addr]) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let sources = sources.to_vec();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let src = |i: usize| sources[i % sources.len()];
            let mut conns: Vec<Option<TcpStream>> = (0..count)
                .map(|i| connect_from(src(i), addr, Duration::from_secs(2)).ok())
                .collect();
            let mut reopened = 0;
            while !flag.load(Ordering::Relaxed) {
                for (i, slot) in conns.iter_mut().enumerate() {
                    let closed = match slot {
                        None => true,
                        Some(s) => {
                            let _ = s.set_nonblocking(true);
                            let mut b = [0u8; 1];
                            !matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                        }
                    };
                    if closed {
                        *slot = connect_from(src(i), addr, Duration::from_secs(2)).ok();
                        reopened += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            reopened
        });
        std::thread::sleep(Duration::from_millis(500));
        Flood {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops; how many connections had to be reopened.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn idle_connections_lock_out_neither_health_checks_nor_tokens() {
    let w = appliance("hard-api-idle");
    let viewer = w.token("viewer");
    let api = w.api_addr();
    // 300 idle connections from 30 addresses, 10 each (under the per-source cap of 16),
    // kept at 300 however many the API closes: more than its 256 places.
    let flooders: Vec<Ipv4Addr> = (0..30).map(|i| ip(0, 0, 2 + i)).collect();
    let flood = Flood::start(api, 300, &flooders);
    let probes = 12;
    let mut answered = 0;
    for i in 0..probes {
        let path = ["/health/live", "/health/ready"][i % 2];
        if get_from(ip(0, 1, 1 + i as u8), api, path, None) == 200 {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let with_token = get_from(ip(0, 2, 1), api, "/v1/servers", Some(&viewer));
    let reopened = flood.stop();
    println!("health probes answered under 300 idle connections: {answered} of {probes}; token request: {with_token}; flood connections reopened: {reopened}");
    assert_eq!(answered, probes, "health probes answered\n{}", w.log());
    assert_eq!(with_token, 200, "a token from another address gets in");
    assert!(
        w.metric("warden_http_refused_total{listener=\"api\",reason=\"evicted\"}") >= 1.0,
        "{}",
        w.metrics()
    );

    // One address gets 16 connections, no more. The flood's closed connections must have
    // left the table first: while it is full, a newcomer evicts the heaviest source's
    // oldest idle connection, which would be this address's own from its 11th on.
    wait_for(
        "the flood's connections to leave the API",
        Duration::from_secs(10),
        || w.metrics(),
        || w.metric("warden_http_connections{listener=\"api\"}") < 1.0,
    );
    let one: Vec<_> = (0..24)
        .filter_map(|_| connect_from(ip(0, 3, 1), api, Duration::from_secs(2)).ok())
        .collect();
    wait_for(
        "per-source refusals to show",
        Duration::from_secs(10),
        || w.metrics(),
        || w.metric("warden_http_refused_total{listener=\"api\",reason=\"per_source\"}") >= 8.0,
    );
    drop(one);
}

/// Opens `/v1/events/stream` with `token` from `src`: (status, what came, the connection).
fn open_stream(
    w: &Warden,
    src: Ipv4Addr,
    token: &str,
    close: bool,
) -> (u16, String, Option<TcpStream>) {
    let connection = if close { "Connection: close\r\n" } else { "" };
    let head = format!(
        "GET /v1/events/stream HTTP/1.1\r\nHost: x\r\n{connection}Authorization: Bearer {token}\r\n\r\n"
    );
    exchange_from(src, w.api_addr(), &head)
}

#[test]
fn a_token_beyond_its_stream_cap_gets_429_and_others_still_stream() {
    let w = appliance("hard-api-streams");
    let (noisy, other) = (w.token("viewer"), w.token("viewer"));
    // The default cap is 8 per token.
    let mut open = Vec::new();
    for i in 0..8 {
        let (status, got, conn) = open_stream(&w, ip(0, 4, i), &noisy, false);
        assert_eq!(status, 200, "stream {i}: {got}\n{}", w.log());
        open.push(conn);
    }
    let (status, got, _) = open_stream(&w, ip(0, 4, 9), &noisy, false);
    assert_eq!(status, 429, "the 9th stream of one token: {got}");
    assert!(got.contains("too_many_streams"), "{got}");
    let (status, got, conn) = open_stream(&w, ip(0, 4, 10), &other, false);
    assert_eq!(status, 200, "another token still streams: {got}");
    open.push(conn);
    // The noisy token still makes ordinary requests; health still answers.
    assert_eq!(
        get_from(ip(0, 4, 11), w.api_addr(), "/v1/servers", Some(&noisy)),
        200
    );
    assert_eq!(
        get_from(ip(0, 4, 12), w.api_addr(), "/health/ready", None),
        200
    );
    assert!(
        w.metric("warden_http_refused_total{listener=\"api\",reason=\"streams_per_token\"}") >= 1.0
    );
}

/// Sends `head` from `src`, then `drip` every second: how long until the server closed the
/// connection (None if it had not after `give_up`), and what it answered.
fn trickle(
    addr: SocketAddr,
    src: Ipv4Addr,
    head: String,
    drip: &'static [u8],
    give_up: Duration,
) -> (Option<Duration>, String) {
    let Ok(mut s) = connect_from(src, addr, Duration::from_secs(2)) else {
        return (Some(Duration::ZERO), "no connection".into());
    };
    let start = Instant::now();
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(head.as_bytes()).is_err() {
        return (Some(start.elapsed()), String::new());
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while start.elapsed() < give_up {
        match s.read(&mut buf) {
            Ok(0) => return (Some(start.elapsed()), String::from_utf8_lossy(&got).into()),
            Ok(n) if got.len() < 16 * 1024 => got.extend_from_slice(&buf[..n]),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Still open: one more drip (a closed socket fails the write or the read).
                if !drip.is_empty() && s.write_all(drip).is_err() {
                    return (Some(start.elapsed()), String::from_utf8_lossy(&got).into());
                }
            }
            Err(_) => return (Some(start.elapsed()), String::from_utf8_lossy(&got).into()),
        }
    }
    (None, String::from_utf8_lossy(&got).into())
}

#[test]
fn api_cuts_trickled_bodies_trickled_heads_and_idle_connections() {
    let w = appliance("hard-api-trickle");
    let admin = w.token("admin");
    let api = w.api_addr();
    let give_up = DEADLINE + SLACK + Duration::from_secs(2);
    let body_head = format!(
        "POST /v1/servers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    let body = std::thread::spawn(move || trickle(api, ip(0, 5, 1), body_head, b" ", give_up));
    let head = std::thread::spawn(move || {
        let start = "GET /v1/servers HTTP/1.1\r\nHost: x\r\n".to_string();
        trickle(api, ip(0, 5, 2), start, b"X-Slow: 1\r\n", give_up)
    });
    let idle = std::thread::spawn(move || trickle(api, ip(0, 5, 3), String::new(), b"", give_up));
    let (body, head, idle) = (
        body.join().expect("body thread"),
        head.join().expect("head thread"),
        idle.join().expect("idle thread"),
    );
    println!(
        "trickled body cut after {:?}, trickled head after {:?}, idle after {:?}",
        body.0, head.0, idle.0
    );
    let within = DEADLINE + SLACK;
    assert!(
        body.0.is_some_and(|d| d <= within),
        "trickled body: {body:?}\n{}",
        w.log()
    );
    assert!(
        body.1.contains(" 408 "),
        "a trickled body gets 408: {}",
        body.1
    );
    assert!(
        head.0.is_some_and(|d| d <= within),
        "trickled head: {head:?}"
    );
    assert!(idle.0.is_some_and(|d| d <= within), "idle: {idle:?}");
    assert!(
        w.metric("warden_http_refused_total{listener=\"api\",reason=\"request_timeout\"}") >= 2.0,
        "{}",
        w.metrics()
    );
    // The API still answers.
    assert_eq!(w.api("GET", "/v1/servers", Some(&admin), None).0, 200);
}

#[test]
fn metrics_listener_cuts_slow_headers_and_idle_floods_do_not_lock_it() {
    let w = appliance("hard-metrics");
    let metrics = SocketAddr::from(([127, 0, 0, 1], w.metrics_port));
    let give_up = DEADLINE + SLACK + Duration::from_secs(2);
    let slow = std::thread::spawn(move || {
        let start = "GET /metrics HTTP/1.1\r\nHost: x\r\n".to_string();
        trickle(metrics, ip(0, 6, 1), start, b"X-Slow: 1\r\n", give_up)
    });
    let idle =
        std::thread::spawn(move || trickle(metrics, ip(0, 6, 2), String::new(), b"", give_up));
    // 100 idle connections from 10 addresses: more than its 64 places.
    let flooders: Vec<Ipv4Addr> = (0..10).map(|i| ip(0, 7, 1 + i)).collect();
    let flood = Flood::start(metrics, 100, &flooders);
    let (status, text, _) = exchange_from(
        ip(0, 6, 3),
        metrics,
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    flood.stop();
    assert_eq!(status, 200, "/metrics under 100 idle connections: {text}");
    let (slow, idle) = (
        slow.join().expect("slow thread"),
        idle.join().expect("idle thread"),
    );
    println!(
        "metrics: slow header cut after {:?}, idle after {:?}",
        slow.0, idle.0
    );
    let within = DEADLINE + SLACK;
    assert!(slow.0.is_some_and(|d| d <= within), "slow header: {slow:?}");
    assert!(idle.0.is_some_and(|d| d <= within), "idle: {idle:?}");
    let m = w.metrics();
    assert!(
        metric_value(
            &m,
            "warden_http_refused_total{listener=\"metrics\",reason=\"request_timeout\"}"
        ) >= 1.0
            && metric_value(
                &m,
                "warden_http_refused_total{listener=\"metrics\",reason=\"evicted\"}"
            ) >= 1.0,
        "{m}"
    );
}

#[test]
fn a_revoked_tokens_streams_end_at_once_on_every_appliance() {
    let redis = Redis::start();
    let store = format!(
        "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\npath = \"{{dir}}\"\n",
        redis.port
    );
    let make = |name: &str| {
        let body = config(
            "",
            None,
            &format!("{store}[archive]\npath = \"{{dir}}/archive\"\n[lifecycle]\nappliance = \"{name}\"\n{API}"),
        );
        let w = Warden::start(name, &body);
        assert!(wait_listening(w.api_addr(), Duration::from_secs(20)));
        w
    };
    let (a, b) = (make("hard-revoke-a"), make("hard-revoke-b"));
    let admin = a.token("admin");
    let (s, made) = a.api(
        "POST",
        "/v1/tokens",
        Some(&admin),
        Some(&json!({"role": "viewer", "name": "dashboard"}).to_string()),
    );
    assert_eq!(s, 201, "{made}");
    let (viewer, id) = (
        made["secret"].as_str().unwrap_or_default().to_string(),
        made["token"]["id"].as_str().unwrap_or_default().to_string(),
    );
    // A stream on the appliance that revokes, and one on the other.
    let mut readers = Vec::new();
    for (w, src) in [(&a, ip(0, 8, 1)), (&b, ip(0, 8, 2))] {
        let (status, got, conn) = open_stream(w, src, &viewer, true);
        assert_eq!(status, 200, "{got}\n{}", w.log());
        let mut conn = conn.expect("stream connection");
        readers.push(std::thread::spawn(move || {
            // When the stream ended (the connection closes after it); None if not in 10 s.
            let give_up = Instant::now() + Duration::from_secs(10);
            let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = [0u8; 4096];
            while Instant::now() < give_up {
                match conn.read(&mut buf) {
                    Ok(0) => return Some(Instant::now()),
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return Some(Instant::now()),
                }
            }
            None
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    let revoked_at = Instant::now();
    let (s, body) = a.api("DELETE", &format!("/v1/tokens/{id}"), Some(&admin), None);
    assert_eq!(s, 204, "{body}");
    let ended: Vec<Option<Duration>> = readers
        .into_iter()
        .map(|r| {
            r.join()
                .expect("reader")
                .map(|t| t.saturating_duration_since(revoked_at))
        })
        .collect();
    println!(
        "streams ended after the revoke: here {:?}, on the other appliance {:?}",
        ended[0], ended[1]
    );
    for (where_, d) in ["the revoking appliance", "the other appliance"]
        .iter()
        .zip(&ended)
    {
        assert!(
            d.is_some_and(|d| d <= Duration::from_secs(3)),
            "the stream on {where_} ended {d:?} after the revoke\n{}\n{}",
            a.log(),
            b.log()
        );
    }
    let (s, _): (u16, Value) = b.api("GET", "/v1/servers", Some(&viewer), None);
    assert_eq!(s, 401);
}
