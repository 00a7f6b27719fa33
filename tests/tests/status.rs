//! Server-list pings answered at the edge, checked with PyPI `mcstatus`.

use warden_tests::*;

/// A tiny valid PNG header is all Warden checks; mcstatus only reports that a favicon exists.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0@\0\0\0@\x08\x06\0\0\0\xaaiq\xde";

#[test]
fn status_is_cached_and_a_flood_reaches_the_backend_once() {
    let backend = Backend::start("1.20.4", &["--motd", "edge-cached {version}"]);
    let port = backend.port("1.20.4");
    let cfg = config(
        "",
        None,
        &format!(
            "[status]\ncache_ttl = \"60s\"\n{}",
            server("s", "s.test", &format!("127.0.0.1:{port}"))
        ),
    );
    let warden = Warden::start("status-cache", &cfg);
    let addr = format!("127.0.0.1:{}", warden.port);
    let first = mcstatus(&["--addr", &addr, "--host", "s.test", "--protocol", "765"]);
    assert_eq!(first[0]["ok"], true, "{first:?}");
    assert_eq!(first[0]["motd"], "edge-cached 1.20.4");
    assert_eq!(first[0]["protocol"], 765);
    let flood = mcstatus(&[
        "--addr",
        &addr,
        "--host",
        "s.test",
        "--protocol",
        "765",
        "--count",
        "300",
    ]);
    assert_eq!(flood.len(), 300);
    assert!(
        flood
            .iter()
            .all(|r| r["ok"] == true && r["motd"] == "edge-cached 1.20.4"),
        "{flood:?}"
    );
    // 301 pings, one TTL window, one key: the backend was asked exactly once.
    assert_eq!(
        backend.events("status").len(),
        1,
        "{:?}",
        backend.events("status")
    );
    assert!(warden.metric("warden_status_cache_total{result=\"hit\"}") >= 300.0);
    // The client's protocol is not part of the key (clients choose it freely): a 1.8
    // client gets the same cached answer, and the backend is not asked again.
    let other = mcstatus(&["--addr", &addr, "--host", "s.test", "--protocol", "47"]);
    assert_eq!(other[0]["ok"], true);
    assert_eq!(other[0]["protocol"], 765);
    assert_eq!(backend.events("status").len(), 1);
}

#[test]
fn legacy_pings_get_legacy_answers() {
    let backend = Backend::start("1.8.8", &["--motd", "old school"]);
    let port = backend.port("1.8.8");
    let cfg = config(
        "unknown_host = \"lobby\"",
        None,
        &server("lobby", "lobby.test", &format!("127.0.0.1:{port}")),
    );
    let warden = Warden::start("legacy", &cfg);
    let addr = format!("127.0.0.1:{}", warden.port);
    for variant in ["1.6", "fe01fa", "fe01", "fe"] {
        let r = mcstatus(&[
            "--addr",
            &addr,
            "--host",
            "lobby.test",
            "--legacy",
            "--legacy-variant",
            variant,
        ]);
        assert_eq!(r[0]["ok"], true, "{variant}: {r:?}\n{}", warden.log());
        assert_eq!(r[0]["motd"], "old school", "{variant}: {r:?}");
    }
    assert_eq!(warden.metric("warden_legacy_pings_total"), 4.0);
}

#[test]
fn down_backend_shows_offline_motd_favicon_and_echoes_protocol() {
    let dir = tempdir("favicon");
    let icon = dir.join("icon.png");
    std::fs::write(&icon, PNG).expect("png");
    let dead = free_port();
    let rest = format!(
        "{}[servers.motd]\noffline = \"Back soon!\"\nfavicon = \"{}\"\n",
        server("down", "down.test", &format!("127.0.0.1:{dead}")),
        icon.display()
    );
    let warden = Warden::start("offline-motd", &config("", None, &rest));
    let addr = format!("127.0.0.1:{}", warden.port);
    for protocol in ["47", "767"] {
        let r = mcstatus(&[
            "--addr",
            &addr,
            "--host",
            "down.test",
            "--protocol",
            protocol,
        ]);
        assert_eq!(r[0]["ok"], true, "{r:?}");
        assert_eq!(r[0]["motd"], "Back soon!");
        assert_eq!(r[0]["favicon"], true);
        assert_eq!(
            r[0]["protocol"].to_string(),
            protocol,
            "Warden's own status echoes the client's protocol"
        );
    }
    // Unknown hosts are dropped silently.
    let r = mcstatus(&["--addr", &addr, "--host", "nobody.test", "--timeout", "3"]);
    assert_eq!(r[0]["ok"], false);
    assert!(warden.metric("warden_connections_rejected_total{reason=\"unknown_host\"}") >= 1.0);
}
