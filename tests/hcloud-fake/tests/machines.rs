//! The fake as a process whose servers are real `warden` processes: a server created
//! through the API with a cloud-config whose write_files holds /etc/warden/warden.toml
//! runs `warden run` once booted and answers on its control API; deleting the server ends
//! the process; the bill counts every started (shortened) hour and stops at deletion; and
//! dropping the `FakeProcess`, even after the fake itself was killed, ends every machine.
//! Needs the `warden` binary: `$WARDEN_BIN`, else target/<profile>/warden.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use warden_hcloud_fake::process::{pid_alive, processes_under};
use warden_hcloud_fake::{FakeOptions, FakeProcess};
use warden_testkit::{free_port, http_request, tempdir, wait_for, warden_bin};

const HOUR_SECS: f64 = 1.0;

fn start(dir: &Path) -> FakeProcess {
    FakeProcess::start(FakeOptions {
        hour_secs: Some(HOUR_SECS),
        boot_delay_ms: Some(300),
        warden_bin: Some(warden_bin()),
        machines_dir: Some(dir.join("machines")),
        stop_grace_ms: Some(3000),
        bin: Some(PathBuf::from(env!("CARGO_BIN_EXE_warden-hcloud-fake"))),
        ..FakeOptions::default()
    })
    .expect("start warden-hcloud-fake")
}

/// Cloud-init user data with a whole node config in write_files: the edge on the
/// server's own address (`{ipv4}`), state on its disk (`{machine_dir}`), the control API
/// on `api_port`.
fn user_data(api_port: u16, edge_port: u16) -> String {
    let config = format!(
        "[edge]\nlisten = \"{{ipv4}}:{edge_port}\"\nupgrade_sock = \"{{machine_dir}}/up.sock\"\n\
         [store]\npath = \"{{machine_dir}}/data\"\n[archive]\npath = \"{{machine_dir}}/archive\"\n\
         [api]\nlisten = \"127.0.0.1:{api_port}\"\n[metrics]\nlisten = \"\"\n"
    );
    let indented: String = config.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "#cloud-config\nwrite_files:\n  - path: /etc/warden/warden.toml\n    content: |\n{indented}"
    )
}

/// Creates a server from the default snapshot; its id and its create action's id.
fn create(fake: &FakeProcess, name: &str, user_data: &str) -> (u64, u64) {
    let (status, body) = fake.api(
        "POST",
        "/v1/servers",
        Some(&json!({
            "name": name, "server_type": "cx22", "location": "fsn1", "image": "1001",
            "labels": {"pool": "machines"}, "user_data": user_data,
        })),
    );
    assert_eq!(status, 201, "{body}");
    (
        body["server"]["id"].as_u64().unwrap(),
        body["action"]["id"].as_u64().unwrap(),
    )
}

/// The final status of an action (at most 30 s).
fn finish(fake: &FakeProcess, action: u64) -> String {
    let a = fake.wait_action(action, Duration::from_secs(30)).unwrap();
    a["status"].as_str().unwrap().to_string()
}

fn server(state: &Value, id: u64) -> &Value {
    state["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
}

/// Waits until server `id`'s machine runs a process and its control API is healthy; the pid.
fn wait_healthy(fake: &FakeProcess, id: u64, api_port: u16) -> u32 {
    let (ok, state) = fake.wait_state(Duration::from_secs(30), |s| {
        s["servers"].as_array().is_some_and(|a| {
            a.iter()
                .any(|m| m["id"] == id && m["machine"]["running"] == true)
        })
    });
    assert!(ok, "machine never ran: {state}");
    let pid = server(&state, id)["machine"]["pid"].as_u64().unwrap() as u32;
    let api = format!("127.0.0.1:{api_port}").parse().unwrap();
    let log =
        PathBuf::from(server(&state, id)["machine"]["dir"].as_str().unwrap()).join("warden.log");
    wait_for(
        "the node's /health/live",
        Duration::from_secs(60),
        || std::fs::read_to_string(&log).unwrap_or_default(),
        || {
            http_request(api, "GET", "/health/live", None, None)
                == (200, r#"{"status":"ok"}"#.into())
        },
    );
    pid
}

#[test]
fn a_server_runs_warden_until_it_is_deleted_and_is_billed_per_started_hour() {
    let dir = tempdir("hcloud-machine");
    let fake = start(&dir);
    let (api_port, edge_port) = (free_port(), free_port());
    let (id, action) = create(&fake, "node-1", &user_data(api_port, edge_port));
    assert_eq!(finish(&fake, action), "success");
    let (_, got) = fake.api("GET", &format!("/v1/servers/{id}"), None);
    assert_eq!(got["server"]["status"], "running");
    let ip = got["server"]["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap()
        .to_string();

    let pid = wait_healthy(&fake, id, api_port);
    // the process is the warden binary, running the config from the user data with the
    // machine's address and directory filled in
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        warden_bin().canonicalize().unwrap()
    );
    let machine_dir = fake.machine_dir("node-1").unwrap();
    let config = std::fs::read_to_string(machine_dir.join("warden.toml")).unwrap();
    assert!(
        config.contains(&format!("listen = \"{ip}:{edge_port}\"")),
        "{config}"
    );
    assert!(config.contains(&format!("path = \"{}/data\"", machine_dir.display())));
    assert!(!config.contains('{'), "{config}");
    assert!(machine_dir.join("files/etc/warden/warden.toml").is_file());
    let edge = format!("{ip}:{edge_port}").parse().unwrap();
    assert!(warden_testkit::wait_listening(
        edge,
        Duration::from_secs(10)
    ));

    // live past the first (one-second) hour, then delete
    let (ok, _) = fake.wait_state(Duration::from_secs(30), |s| {
        let created = server(s, id)["created_ms"].as_u64().unwrap_or(u64::MAX);
        s["now_ms"].as_u64().unwrap_or(0) > created + 1200
    });
    assert!(ok);
    let (status, body) = fake.api("DELETE", &format!("/v1/servers/{id}"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action"]["command"], "delete_server");
    assert_eq!(
        finish(&fake, body["action"]["id"].as_u64().unwrap()),
        "success"
    );

    // the process is gone and its API with it
    let (ok, state) = fake.wait_state(Duration::from_secs(30), |s| {
        server(s, id)["machine"]["running"] == false
    });
    assert!(ok, "{state}");
    assert!(!pid_alive(pid));
    assert!(server(&state, id)["machine"]["exit"].is_string());
    let api = format!("127.0.0.1:{api_port}").parse().unwrap();
    assert_eq!(http_request(api, "GET", "/health/live", None, None).0, 0);
    assert!(processes_under(&machine_dir).is_empty());
    let (status, body) = fake.api("GET", &format!("/v1/servers/{id}"), None);
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));

    // billed: every started hour from create to delete, at cx22's price, and no more
    // once deleted
    let s = server(&state, id);
    assert_eq!(s["status"], "deleted");
    let lived = s["deleted_ms"].as_u64().unwrap() - s["created_ms"].as_u64().unwrap();
    let hours = s["billed_hours"].as_u64().unwrap();
    assert_eq!(hours, lived / (HOUR_SECS * 1000.0) as u64 + 1);
    assert!(hours >= 2, "{s}");
    assert!((s["cost_eur"].as_f64().unwrap() - hours as f64 * 0.006).abs() < 1e-9);
    assert_eq!(state["total_billed_hours"], hours);
    let deleted = s["deleted_ms"].as_u64().unwrap();
    let (ok, later) = fake.wait_state(Duration::from_secs(30), |s| {
        s["now_ms"].as_u64().unwrap_or(0) > deleted + 1500
    });
    assert!(ok);
    assert_eq!(server(&later, id)["billed_hours"], hours);
}

#[test]
fn user_data_without_a_warden_config_boots_a_server_that_runs_nothing() {
    let dir = tempdir("hcloud-no-config");
    let fake = start(&dir);
    let (id, action) = create(&fake, "bare", "#cloud-config\nruncmd: [\"true\"]\n");
    assert_eq!(finish(&fake, action), "success");
    let (ok, state) = fake.wait_state(Duration::from_secs(30), |s| {
        server(s, id)["machine"]["error"].is_string()
    });
    assert!(ok, "{state}");
    let m = &server(&state, id)["machine"];
    assert_eq!(m["error"], "user_data writes no /etc/warden/warden.toml");
    assert_eq!((&m["pid"], &m["running"]), (&Value::Null, &json!(false)));
    assert_eq!(server(&state, id)["status"], "running");
}

#[test]
fn dropping_the_fake_ends_its_machines_even_when_the_fake_was_killed() {
    let dir = tempdir("hcloud-drop");
    let machines = dir.join("machines");
    for kill_fake_first in [false, true] {
        let fake = start(&dir);
        let name = format!("node-{kill_fake_first}");
        let api_port = free_port();
        let (id, _) = create(&fake, &name, &user_data(api_port, free_port()));
        let pid = wait_healthy(&fake, id, api_port);
        let fake_pid = fake.pid();
        if kill_fake_first {
            // a fake that cannot clean up: its machine outlives it until the guard drops
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(fake_pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            wait_for(
                "the fake to die",
                Duration::from_secs(10),
                String::new,
                || !pid_alive(fake_pid),
            );
            assert!(pid_alive(pid), "the machine should outlive a killed fake");
        }
        drop(fake);
        assert!(!pid_alive(fake_pid));
        assert!(
            !pid_alive(pid),
            "machine {pid} outlived the FakeProcess (fake killed first: {kill_fake_first}): {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/stat")),
        );
        assert!(processes_under(&machines).is_empty());
    }
}
