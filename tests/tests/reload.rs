//! Config reload: edits take effect without a restart, bad edits are refused while the
//! old table keeps serving, and `warden config check` points at the broken line.

use std::process::Command;
use std::time::{Duration, Instant};

use warden_tests::*;

fn wait_metric(w: &Warden, prefix: &str, at_least: f64) -> bool {
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        if w.metric(prefix) >= at_least {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn file_change_and_sighup_swap_routes_and_bad_edits_are_refused() {
    let backend = Backend::start("1.21.4", &[]);
    let b = format!("127.0.0.1:{}", backend.port("1.21.4"));
    let warden = Warden::start("reload", &config("", None, &server("a", "a.test", &b)));
    let p = warden.port.to_string();
    let join = |host: &str| {
        player(&[
            "--port",
            &p,
            "--version",
            "1.21.4",
            "--server-host",
            host,
            "--timeout-ms",
            "8000",
        ])
        .0
    };
    let write = |body: String| {
        let text = body
            .replace("{port}", &warden.port.to_string())
            .replace("{metrics}", &warden.metrics_port.to_string())
            .replace("{dir}", &warden.dir.to_string_lossy());
        std::fs::write(&warden.config, text).expect("write config");
    };
    assert!(join("a.test"));
    assert!(!join("b.test"));

    // A file change adds b.test.
    write(config(
        "",
        None,
        &(server("a", "a.test", &b) + &server("b", "b.test", &b)),
    ));
    assert!(
        wait_metric(&warden, "warden_config_reloads_total{result=\"ok\"}", 1.0),
        "{}",
        warden.log()
    );
    assert!(join("b.test"), "{}", warden.log());

    // A broken edit (b.test claimed twice) is refused; both hosts keep working.
    write(config(
        "",
        None,
        &(server("a", "a.test", &b) + &server("b", "b.test", &b) + &server("c", "b.test", &b)),
    ));
    assert!(wait_metric(
        &warden,
        "warden_config_reloads_total{result=\"error\"}",
        1.0
    ));
    assert!(warden.log().contains("still serving the previous config"));
    assert!(join("a.test") && join("b.test"));

    // SIGHUP reloads too: drop a.test.
    let before = warden.metric("warden_config_reloads_total{result=\"ok\"}");
    let only_b = config("", None, &server("b", "b.test", &b))
        .replace("{port}", &warden.port.to_string())
        .replace("{metrics}", &warden.metrics_port.to_string())
        .replace("{dir}", &warden.dir.to_string_lossy());
    std::fs::write(&warden.config, only_b).expect("write");
    warden.signal(libc::SIGHUP);
    assert!(wait_metric(
        &warden,
        "warden_config_reloads_total{result=\"ok\"}",
        before + 1.0
    ));
    assert!(!join("a.test"));
    assert!(join("b.test"));
}

#[test]
fn config_check_names_file_line_and_hint() {
    let dir = tempdir("check");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[edge]\nlisten = \"0.0.0.0:25565\"\n\n[[servers]]\nid = \"a\"\nhosts = [\"a.test\"]\nbackend = \"127.0.0.1\"\n").expect("write");
    let out = Command::new(warden_bin())
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains(&format!("{}:7:", bad.display())), "{err}");
    assert!(err.contains("hint:"), "{err}");

    let good = repo_root().join("examples/warden.toml");
    let out = Command::new(warden_bin())
        .args(["config", "check"])
        .arg(&good)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}
