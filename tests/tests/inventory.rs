//! Issue 13: one server inventory. API-defined servers are merged with the config file as
//! last accepted and held in memory, so a file broken on disk (an edit in progress, a
//! favicon moved away) no longer blocks adding or removing servers through the API; and
//! the kinds `warden run` would refuse (`store.kind`, `archive.kind`, `webhooks.format`,
//! redis without `store.url`) are refused by `warden config check`, with line and hint.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use warden_tests::*;

/// A tiny valid PNG header is all Warden checks of a favicon.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0@\0\0\0@\x08\x06\0\0\0\xaaiq\xde";
const ERRORS: &str = "warden_config_reloads_total{result=\"error\"}";
const OKS: &str = "warden_config_reloads_total{result=\"ok\"}";

/// The MOTD of a status ping through `w` for `host` (empty if nothing answered).
fn motd_of(w: &Warden, host: &str) -> String {
    motd(&w.addr().to_string(), host)
}

#[test]
fn api_changes_do_not_reread_a_file_broken_on_disk() {
    let backend = Backend::start("1.20.4", &["--motd", "inventory {version}"]);
    let b = format!("127.0.0.1:{}", backend.port("1.20.4"));
    let assets = tempdir("inventory-assets");
    let icon = assets.join("icon.png");
    std::fs::write(&icon, PNG).expect("png");
    let file = |extra: &str| {
        let rest = format!(
            "{}{API}{}[servers.motd]\nfavicon = \"{}\"\n{extra}",
            stores_in(std::path::Path::new("{dir}")),
            server("a", "a.test", &b),
            icon.display()
        );
        config("", None, &rest)
    };
    let w = Warden::start("inventory-broken-file", &file(""));
    // The token is made from the file, so before it breaks.
    let admin = w.token("admin");
    assert_eq!(motd_of(&w, "a.test"), "inventory 1.20.4", "{}", w.log());

    // Mid-edit: the favicon has moved away and the file is cut short. The reload refuses it.
    std::fs::remove_file(&icon).expect("move the favicon away");
    std::fs::write(&w.config, "[[servers]]\nid = \"a\"\nhosts = [").expect("break config");
    wait_for(
        "the broken file to be refused",
        Duration::from_secs(10),
        || w.log(),
        || w.metric(ERRORS) >= 1.0,
    );

    // Adding a server through the API still works, and routes it at once.
    let spec = json!({"id": "b", "hosts": ["b.test"], "backend": b}).to_string();
    let (s, made) = w.api("POST", "/v1/servers", Some(&admin), Some(&spec));
    assert_eq!(s, 201, "{made}\n{}", w.log());
    assert_eq!(made["hosts"], json!(["b.test"]), "{made}\n{}", w.log());
    assert_eq!(motd_of(&w, "b.test"), "inventory 1.20.4", "{}", w.log());
    assert_eq!(motd_of(&w, "a.test"), "inventory 1.20.4", "{}", w.log());
    // And deleting one.
    let (s, _) = w.api("DELETE", "/v1/servers/b", Some(&admin), None);
    assert_eq!(s, 204, "{}", w.log());
    assert_eq!(motd_of(&w, "b.test"), "", "{}", w.log());
    // The API never made the file be read again: the one refusal is the reload's.
    assert_eq!(w.metric(ERRORS), 1.0, "{}", w.log());

    // Once the file is whole again, it is reloaded, and API servers stay routed beside it.
    let (s, made) = w.api("POST", "/v1/servers", Some(&admin), Some(&spec));
    assert_eq!(s, 201, "{made}\n{}", w.log());
    std::fs::write(&icon, PNG).expect("png");
    let fixed = file(&server("c", "c.test", &b))
        .replace("{port}", &w.port.to_string())
        .replace("{api}", &w.api_port.to_string())
        .replace("{metrics}", &w.metrics_port.to_string())
        .replace("{dir}", &w.dir.to_string_lossy());
    std::fs::write(&w.config, fixed).expect("fix config");
    wait_for(
        "the fixed file to be reloaded",
        Duration::from_secs(10),
        || w.log(),
        || w.metric(OKS) >= 1.0,
    );
    for host in ["a.test", "b.test", "c.test"] {
        assert_eq!(motd_of(&w, host), "inventory 1.20.4", "{host}\n{}", w.log());
    }
    assert_eq!(w.metric(ERRORS), 1.0, "{}", w.log());
}

#[test]
fn config_check_refuses_unknown_kinds_and_redis_without_url() {
    let dir = tempdir("inventory-check");
    let check = |name: &str, text: &str| {
        let f = dir.join(name);
        std::fs::write(&f, text).expect("write");
        let out = Command::new(warden_bin())
            .args(["config", "check"])
            .arg(&f)
            .output()
            .expect("warden config check");
        (
            f,
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for (name, text, line, says) in [
        ("store.toml", "[store]\nkind = \"redsi\"\n", 2, "redis"),
        (
            "redis.toml",
            "\n[store]\nkind = \"redis\"\n",
            3,
            "store.url",
        ),
        ("archive.toml", "[archive]\nkind = \"s4\"\n", 2, "s3"),
        (
            "hook.toml",
            "[[webhooks]]\nurl = \"https://example.com/hook\"\nformat = \"slack\"\n",
            3,
            "discord",
        ),
    ] {
        let (f, ok, err) = check(name, text);
        assert!(!ok, "{name} passed the check");
        assert!(
            err.contains(&format!("{}:{line}:", f.display())),
            "{name}: {err}"
        );
        assert!(err.contains(says) && err.contains("hint:"), "{name}: {err}");
    }
    let (_, ok, err) = check(
        "good.toml",
        "[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n[archive]\nkind = \"local\"\n\
         [[webhooks]]\nurl = \"https://example.com/hook\"\nformat = \"discord\"\n",
    );
    assert!(ok, "{err}");
}
