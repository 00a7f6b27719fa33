//! Issue 12, finding 4: a reload never swaps in a file caught mid-write (an editor writing
//! in place leaves it empty or cut short for a moment), and never takes away every route
//! unless the file itself says `allow_empty = true`. Status pings run the whole time: not
//! one may fail.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_tests::*;
use warden_wire::{FrameDecoder, Handshake, Intent, PacketWriter};

const ERRORS: &str = "warden_config_reloads_total{result=\"error\"}";
const OKS: &str = "warden_config_reloads_total{result=\"ok\"}";

/// One server-list ping for `host`: true if Warden answered with a status response.
fn status_ok(addr: SocketAddr, host: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let mut out = Handshake {
        protocol: 769,
        address: host.into(),
        port: addr.port(),
        intent: Intent::Status,
    }
    .encode()
    .to_vec();
    out.extend_from_slice(&PacketWriter::new(0x00).into_frame());
    if s.write_all(&out).is_err() {
        return false;
    }
    let frame = read_frame(&mut s, &mut FrameDecoder::new(), Duration::from_secs(3));
    frame.is_some_and(|f| f.first() == Some(&0x00) && f.windows(9).any(|w| w == b"\"version\""))
}

/// Pings every host in turn until stopped; (pings, failures as "host at ms").
struct Pinger {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Pinger {
    fn start(addr: SocketAddr, hosts: &[&str]) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let (mut pings, mut failed) = (0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                for h in &hosts {
                    pings += 1;
                    if !status_ok(addr, h) {
                        failed.push(format!("{h} at {} ms", t0.elapsed().as_millis()));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (pings, failed)
        });
        Pinger { stop, thread }
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("pinger")
    }
}

/// The config text with the harness placeholders filled in for `w`.
fn text(w: &Warden, body: &str) -> String {
    body.replace("{port}", &w.port.to_string())
        .replace("{metrics}", &w.metrics_port.to_string())
        .replace("{dir}", &w.dir.to_string_lossy())
}

/// Rewrites the config in place (truncate, then write), as an editor without
/// rename-into-place does.
fn write_in_place(w: &Warden, body: &str) {
    let mut f = std::fs::File::create(&w.config).expect("truncate config");
    f.write_all(text(w, body).as_bytes()).expect("write config");
}

fn wait_metric(w: &Warden, name: &str, at_least: f64) {
    wait_for(
        name,
        Duration::from_secs(10),
        || w.log(),
        || w.metric(name) >= at_least,
    );
}

#[test]
fn a_file_caught_mid_write_never_takes_routes_down() {
    let backend = Backend::start("1.21.4", &[]);
    let b = format!("127.0.0.1:{}", backend.port("1.21.4"));
    let a_only = config("", None, &server("a", "a.test", &b));
    let full = config(
        "",
        None,
        &(server("a", "a.test", &b) + &server("b", "b.test", &b)),
    );
    let warden = Warden::start("hardening-reload", &full);
    assert!(status_ok(warden.addr(), "a.test") && status_ok(warden.addr(), "b.test"));
    let pinger = Pinger::start(warden.addr(), &["a.test", "b.test"]);

    // An editor truncates the file and only writes it a moment later: the empty file
    // settles, and is refused because it would drop every route.
    write_in_place(&warden, "");
    wait_metric(&warden, ERRORS, 1.0);
    std::thread::sleep(Duration::from_millis(500));
    write_in_place(&warden, &full);
    wait_metric(&warden, OKS, 1.0);

    // Cut short for 150 ms (a valid file with only `a`): never used, the file had not
    // settled. Then the full file again.
    write_in_place(&warden, &a_only);
    std::thread::sleep(Duration::from_millis(150));
    write_in_place(&warden, &full);
    std::thread::sleep(Duration::from_secs(2));
    let (pings, failed) = pinger.finish();
    eprintln!(
        "{pings} status pings during the edits, {} failed",
        failed.len()
    );
    assert!(pings >= 40, "only {pings} pings");
    assert!(
        failed.is_empty(),
        "{} of {pings} pings failed: {failed:?}\n{}",
        failed.len(),
        warden.log()
    );
    assert_eq!(warden.metric(ERRORS), 1.0, "{}", warden.log());
    assert!(warden.log().contains("defines no servers or routes"));
    // A real player still joins through the reloaded table.
    let (ok, lines) = player(&[
        "--port",
        &warden.port.to_string(),
        "--version",
        "1.21.4",
        "--server-host",
        "b.test",
    ]);
    assert!(ok, "{lines:?}\n{}", warden.log());
}

#[test]
fn dropping_every_route_needs_allow_empty_in_the_file() {
    let backend = Backend::start("1.21.4", &[]);
    let b = format!("127.0.0.1:{}", backend.port("1.21.4"));
    let with_a = config("", None, &server("a", "a.test", &b));
    let no_servers = config("", None, "");
    let warden = Warden::start("hardening-reload-empty", &with_a);
    let addr = warden.addr();

    // A complete, valid file with no servers: refused on a file change and on SIGHUP.
    write_in_place(&warden, &no_servers);
    wait_metric(&warden, ERRORS, 1.0);
    assert!(status_ok(addr, "a.test"), "{}", warden.log());
    warden.signal(libc::SIGHUP);
    wait_metric(&warden, ERRORS, 2.0);
    assert!(status_ok(addr, "a.test"), "{}", warden.log());
    assert!(
        warden.log().contains("allow_empty = true"),
        "{}",
        warden.log()
    );
    assert_eq!(warden.metric(OKS), 0.0);

    // Said explicitly in the file: applied, and a.test is gone.
    write_in_place(&warden, &format!("allow_empty = true\n{no_servers}"));
    wait_metric(&warden, OKS, 1.0);
    assert!(!status_ok(addr, "a.test"));
    // From a file that routes nothing, adding a server is an ordinary reload.
    write_in_place(&warden, &with_a);
    wait_metric(&warden, OKS, 2.0);
    assert!(status_ok(addr, "a.test"), "{}", warden.log());
    assert_eq!(warden.metric(ERRORS), 2.0, "{}", warden.log());
}
