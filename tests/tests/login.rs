//! Players log in through Warden: every version the npm `minecraft-protocol` package
//! supports, wildcard routes, and the readable disconnects when a backend can't be reached.

use std::net::TcpListener;
use std::time::Duration;

use warden_tests::*;

/// One nmp backend per version, one server per version in the config (`1-20-4.v.test`),
/// one player per version through Warden, all logging in, playing and chatting.
#[test]
fn every_supported_version_logs_in_and_plays() {
    let versions = nmp_versions();
    assert!(
        versions.len() >= 20,
        "nmp lists too few versions: {versions:?}"
    );
    let backend = Backend::start("all", &[]);
    let mut servers = String::new();
    for (v, port) in &backend.servers {
        let label = v.replace('.', "-");
        servers.push_str(&server(
            &format!("v{label}"),
            &format!("{label}.v.test"),
            &format!("127.0.0.1:{port}"),
        ));
    }
    let warden = Warden::start("versions", &config("", None, &servers));
    let port = warden.port.to_string();
    let (ok, lines) = player(&[
        "--versions",
        "all",
        "--port",
        &port,
        "--server-host",
        "{v}.v.test",
        "--chat",
        "hi",
        "--timeout-ms",
        "60000",
    ]);
    let failed: Vec<_> = lines.iter().filter(|l| l["ok"] != true).collect();
    assert!(
        ok && failed.is_empty(),
        "failures: {failed:#?}\nwarden log:\n{}",
        warden.log()
    );
    let passed: Vec<&str> = lines.iter().filter_map(|l| l["version"].as_str()).collect();
    for v in &versions {
        assert!(passed.contains(&v.as_str()), "no result for {v}");
    }
    for l in &lines {
        assert_eq!(l["echo"], "echo:hi", "{l}");
    }
    // The backend saw the handshake Warden replayed, with the player's host.
    let logins = backend.events("login");
    assert_eq!(logins.len(), versions.len());
    for l in logins {
        let v = l["version"].as_str().unwrap_or_default().replace('.', "-");
        assert_eq!(l["serverHost"], format!("{v}.v.test"));
    }
    assert_eq!(warden.metric("warden_sessions_active"), 0.0);
    assert!(warden.metric("warden_bytes_total{direction=\"backend_to_client\"}") > 0.0);
}

/// `*.wild.test` → `{1}:PORT`: the captured label becomes the backend host.
#[test]
fn wildcard_route_fills_backend_from_label() {
    let backend = Backend::start("1.20.4", &[]);
    let port = backend.port("1.20.4");
    let cfg = config(
        "",
        None,
        &format!("[[routes]]\nhost = \"*.wild.test\"\nbackend = \"{{1}}:{port}\"\n"),
    );
    let warden = Warden::start("wildcard", &cfg);
    let p = warden.port.to_string();
    let (ok, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.20.4",
        "--server-host",
        "localhost.wild.test",
        "--chat",
        "w",
    ]);
    assert!(ok, "{lines:?}\n{}", warden.log());
    // A label that isn't a DNS label is never put into a backend address.
    let (ok, _) = player(&[
        "--port",
        &p,
        "--version",
        "1.20.4",
        "--server-host",
        "a:1.wild.test",
        "--timeout-ms",
        "5000",
    ]);
    assert!(!ok);
    assert!(warden.metric("warden_connections_rejected_total{reason=\"unknown_host\"}") >= 1.0);
}

/// A backend that refuses, or accepts and dies before login, gets the player a login
/// Disconnect with a reason, not a dropped socket.
#[test]
fn unreachable_backend_gets_a_readable_disconnect() {
    let dead = free_port();
    let dying = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dying_port = dying.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in dying.incoming().flatten() {
            drop(s);
        }
    });
    let servers = server("down", "down.test", &format!("127.0.0.1:{dead}"))
        + &server("dying", "dying.test", &format!("127.0.0.1:{dying_port}"));
    let cfg = config("", None, &servers);
    let warden = Warden::start("unreachable", &cfg);
    let p = warden.port.to_string();
    let (ok, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.21.4",
        "--server-host",
        "down.test",
        "--timeout-ms",
        "10000",
    ]);
    assert!(!ok);
    let kick = lines[0]["kick"].as_str().unwrap_or_default();
    assert!(kick.contains("down is not reachable"), "{lines:?}");
    let (ok, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.8.8",
        "--server-host",
        "dying.test",
        "--timeout-ms",
        "10000",
    ]);
    assert!(!ok);
    let kick = lines[0]["kick"].as_str().unwrap_or_default();
    assert!(
        kick.contains("closed the connection before you could log in"),
        "{lines:?}"
    );
    assert!(warden.metric("warden_backend_errors_total") >= 2.0);
}

/// Logins over the per-network rate get a readable disconnect; others still get in.
#[test]
fn login_rate_limit_disconnects_readably() {
    let backend = Backend::start("1.21.4", &[]);
    let port = backend.port("1.21.4");
    let cfg = config(
        "",
        Some("login_per_second = 2\n"),
        &server("s", "s.test", &format!("127.0.0.1:{port}")),
    );
    let warden = Warden::start("ratelimit", &cfg);
    let p = warden.port.to_string();
    let (_, lines) = player(&[
        "--port",
        &p,
        "--version",
        "1.21.4",
        "--server-host",
        "s.test",
        "--count",
        "12",
        "--timeout-ms",
        "20000",
    ]);
    let ok = lines.iter().filter(|l| l["ok"] == true).count();
    let limited = lines
        .iter()
        .filter(|l| {
            l["kick"]
                .as_str()
                .is_some_and(|k| k.contains("Too many login attempts"))
        })
        .count();
    assert!(ok >= 1, "{lines:#?}");
    assert!(limited >= 1, "{lines:#?}");
    assert_eq!(ok + limited, 12, "{lines:#?}");
    assert!(warden.metric("warden_connections_rejected_total{reason=\"login_rate\"}") >= 1.0);
    std::thread::sleep(Duration::from_millis(1100));
}
