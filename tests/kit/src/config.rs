//! The config text a test gives the `warden` binary: an `[edge]` on the ports the harness
//! picks (`{port}`, `{metrics}`, `{api}`, `{dir}` are filled in by [`crate::Warden::start`]),
//! open limits, and `[[servers]]` entries for fixed backends or managed `backend.js` ones.

use std::path::Path;

use crate::paths::peers_dir;

/// Limits high enough that tests (all from 127.0.0.1, one /24) never trip them.
pub const OPEN_LIMITS: &str =
    "status_per_second = 1000000\nlogin_per_second = 1000000\nconnections_per_bucket = 1000000\nmax_connections = 1000000\n";

/// A test config: `[edge]` with listen/upgrade socket plus `edge_extra`, `[edge.limits]`
/// (`limits`, or [`OPEN_LIMITS`]), `[metrics]`, then `rest` (servers, routes, status).
pub fn config(edge_extra: &str, limits: Option<&str>, rest: &str) -> String {
    format!(
        "[edge]\nlisten = \"127.0.0.1:{{port}}\"\nupgrade_sock = \"{{dir}}/up.sock\"\n{edge_extra}\n[edge.limits]\n{}\n[metrics]\nlisten = \"127.0.0.1:{{metrics}}\"\n{rest}",
        limits.unwrap_or(OPEN_LIMITS)
    )
}

/// A server entry routing `host` to `backend`.
pub fn server(id: &str, host: &str, backend: &str) -> String {
    format!("[[servers]]\nid = \"{id}\"\nhosts = [\"{host}\"]\nbackend = \"{backend}\"\n")
}

/// `[store]` and `[archive]` sections inside `dir`.
pub fn stores_in(dir: &Path) -> String {
    format!(
        "[store]\npath = \"{}/store\"\n[archive]\npath = \"{}/archive\"\n",
        dir.display(),
        dir.display()
    )
}

/// A managed `[[servers]]` entry: `backend.js` (protocol `version`) on `port`, started by
/// Warden as a process in `data`, asleep after `sleep_after`.
pub fn node_server(id: &str, host: &str, port: u16, data: &Path, sleep_after: &str) -> String {
    let _ = std::fs::create_dir_all(data);
    format!(
        "{}sleep_after = \"{sleep_after}\"\nstart_timeout = \"60s\"\nstop_timeout = \"10s\"\n\
         runtime = {{ kind = \"process\", command = [\"node\", \"{}\", \"--version\", \"1.20.4\", \"--port\", \"{port}\"], dir = \"{}\" }}\n",
        server(id, host, &format!("127.0.0.1:{port}")),
        peers_dir().join("backend.js").display(),
        data.display()
    )
}
