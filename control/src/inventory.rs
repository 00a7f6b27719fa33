//! Every server Warden knows, from the three places that define them: the config file (as
//! a reload last accepted it), the control API and Docker labels.
//!
//! Each run-time source hands over everything it defines; the inventory works out what
//! that changes (servers to add to the engine, to remove from it), applies it, and builds
//! the routing table from the file's servers followed by the run-time ones, all from
//! memory: a change through the API or from Docker never reads the config file (or its
//! favicons) again, so a file broken on disk does not block it. The file wins: a run-time
//! server whose id is a configured server's, whose host is taken, or whose backend is
//! Warden itself is skipped with a warning.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tracing::{info, warn};
use warden_proxy::loopguard::backend_points_at;
use warden_proxy::route::{RouteTable, RouteTableBuilder};
use warden_proxy::settings::Snapshot;
use warden_proxy::wire::normalize_host;
use warden_proxy::Edge;

use crate::config::{FileServers, Managed, ServerSpec};
use warden_lifecycle::{Engine, ManagedServer};

/// Where a run-time server comes from. The order is the routing order after the file's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The control API (specs in the state store).
    Api,
    /// A labelled Docker container.
    Docker,
}

/// Makes the engine's server from a managed spec (runtimes, data, archive storage).
#[async_trait]
pub trait Build: Send + Sync {
    async fn build(&self, spec: &ServerSpec, managed: &Managed) -> anyhow::Result<ManagedServer>;
}

/// What replacing a source's servers changes.
#[derive(Debug, Default, PartialEq)]
pub struct Change {
    /// Ids no longer defined.
    pub removed: Vec<String>,
    /// New or changed servers.
    pub added: Vec<ServerSpec>,
    /// Servers defined as before.
    pub kept: Vec<ServerSpec>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}

/// What `now` changes against `before` (both by id).
pub fn diff(before: &BTreeMap<String, ServerSpec>, now: &BTreeMap<String, ServerSpec>) -> Change {
    let mut change = Change {
        removed: before
            .keys()
            .filter(|id| !now.contains_key(*id))
            .cloned()
            .collect(),
        ..Change::default()
    };
    for (id, spec) in now {
        match before.get(id) == Some(spec) {
            true => change.kept.push(spec.clone()),
            false => change.added.push(spec.clone()),
        }
    }
    change
}

/// The data plane's snapshot: the file's servers and routes, then each run-time source's
/// servers that fit.
pub fn snapshot(
    file: &FileServers,
    run: &BTreeMap<Source, BTreeMap<String, ServerSpec>>,
) -> Snapshot {
    Snapshot {
        table: table(file, run),
        settings: file.settings.clone(),
    }
}

fn table(file: &FileServers, run: &BTreeMap<Source, BTreeMap<String, ServerSpec>>) -> RouteTable {
    let mut builder = RouteTableBuilder::default();
    for s in file.servers.iter().chain(&file.routes) {
        // Checked when the file was read: every one fits.
        if let Err(e) = builder.add(s.route.clone(), &s.hosts) {
            warn!(server = %s.id(), error = %e, "configured server not routed");
        }
    }
    for s in run.values().flat_map(BTreeMap::values) {
        let taken = file.servers.iter().any(|c| c.id() == s.id());
        let hosts: Result<Vec<String>, String> = s
            .hosts
            .iter()
            .map(|h| normalize_host(h).map_err(|e| format!("host {h:?}: {e}")))
            .collect();
        let added = match (hosts, own_listener(file, &s.route.backend)) {
            (Ok(_), _) if taken => Err("its id is a configured server's".to_string()),
            (Ok(_), Some(key)) => Err(format!(
                "its backend {} is this Warden's own {key} (a routing loop)",
                s.route.backend
            )),
            (Ok(h), None) => match h.iter().find(|h| builder.claims(h)) {
                Some(h) => Err(format!("host {h} is already routed to another server")),
                None => builder.add(s.route.clone(), &h).map_err(|e| e.to_string()),
            },
            (Err(e), _) => Err(e),
        };
        if let Err(why) = added {
            warn!(server = %s.id(), hosts = ?s.hosts, %why, "run-time server not routed");
        }
    }
    builder.build(file.unknown_host.clone())
}

/// The config key of the own listener `backend` points at, if it does.
fn own_listener(file: &FileServers, backend: &str) -> Option<&'static str> {
    file.own_listeners
        .iter()
        .find(|(_, l)| backend_points_at(std::slice::from_ref(l), backend))
        .map(|(key, _)| *key)
}

/// The servers as last applied, shared by the reloader, the API catalog and discovery.
pub struct Inventory {
    edge: Arc<Edge>,
    state: parking_lot::Mutex<State>,
}

struct State {
    /// The file as a reload last accepted it.
    file: FileServers,
    /// Each run-time source's servers as applied (the engine holds the managed ones).
    run: BTreeMap<Source, BTreeMap<String, ServerSpec>>,
}

impl Inventory {
    /// The inventory of a file, serving on `edge` (which already routes `file`).
    pub fn new(edge: Arc<Edge>, file: FileServers) -> Self {
        Self {
            edge,
            state: parking_lot::Mutex::new(State {
                file,
                run: BTreeMap::new(),
            }),
        }
    }

    /// Servers plus routes the file defines.
    pub fn file_routes(&self) -> usize {
        let s = self.state.lock();
        s.file.servers.len() + s.file.routes.len()
    }

    /// Takes a newly accepted file and routes it with the run-time servers; the number of
    /// servers now routed. The engine keeps the file's managed servers it started with.
    pub fn set_file(&self, file: FileServers) -> usize {
        let mut s = self.state.lock();
        s.file = file;
        self.publish(&s)
    }

    /// Makes `now` everything `source` defines: removes the engine's servers that are gone,
    /// builds and adds the new and changed ones, and routes what was applied. A server
    /// that could not be applied is not routed; the next call tries it again. Returns
    /// false if the engine could not take a server (the store is down, say); true if
    /// everything was applied or is not worth retrying (see [`Source`]'s log lines).
    /// Calls for one source must not overlap.
    pub async fn apply(
        &self,
        engine: &Engine,
        source: Source,
        now: &BTreeMap<String, ServerSpec>,
        build: &dyn Build,
    ) -> bool {
        let change = {
            let s = self.state.lock();
            match s.run.get(&source) {
                Some(before) => diff(before, now),
                // Never applied: route it even if it defines nothing.
                None => diff(&BTreeMap::new(), now),
            }
        };
        if change.is_empty() && self.state.lock().run.contains_key(&source) {
            return true;
        }
        for id in &change.removed {
            engine.remove(id);
            match source {
                Source::Api => info!(server = %id, "API server deleted; no longer routed"),
                Source::Docker => {
                    info!(server = %id, "discovered container gone; no longer routed")
                }
            }
        }
        let mut ok = true;
        let mut applied: BTreeMap<String, ServerSpec> = change
            .kept
            .into_iter()
            .map(|s| (s.id().to_string(), s))
            .collect();
        for spec in change.added {
            let id = spec.id().to_string();
            let Some(managed) = &spec.managed else {
                engine.remove(&id);
                applied.insert(id, spec);
                continue;
            };
            let built = match build.build(&spec, managed).await {
                Ok(server) => server,
                Err(e) => {
                    match source {
                        Source::Api => {
                            warn!(server = %id, error = %e, "API server not applied; retrying")
                        }
                        // Labels or a container Warden does not own: retrying won't help.
                        Source::Docker => {
                            warn!(server = %id, error = %e, "discovered container ignored")
                        }
                    }
                    continue;
                }
            };
            match engine.add(built).await {
                Ok(()) => {
                    match source {
                        Source::Api => info!(server = %id, "API server applied"),
                        Source::Docker => info!(
                            server = %id,
                            host = %spec.hosts.join(","),
                            "discovered container routed"
                        ),
                    }
                    applied.insert(id, spec);
                }
                Err(e) => {
                    match source {
                        Source::Api => {
                            warn!(server = %id, error = %e, "API server not applied; retrying")
                        }
                        Source::Docker => warn!(
                            server = %id,
                            error = %e,
                            "discovered container not added; retrying"
                        ),
                    }
                    ok = false;
                }
            }
        }
        let mut s = self.state.lock();
        s.run.insert(source, applied);
        self.publish(&s);
        ok
    }

    /// Swaps in the snapshot `s` makes; the number of servers routed. Called with the
    /// state locked, so snapshots are swapped in the order their states were made.
    fn publish(&self, s: &State) -> usize {
        let snapshot = snapshot(&s.file, &s.run);
        let n = snapshot.table.servers().len();
        self.edge.swap(snapshot);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_proxy::route::{Server, UnknownHost};
    use warden_proxy::settings::EdgeSettings;

    fn spec(id: &str, host: &str, backend: &str) -> ServerSpec {
        ServerSpec {
            route: Server::new(id, backend),
            hosts: vec![host.to_string()],
            managed: None,
        }
    }

    fn by_id(specs: &[ServerSpec]) -> BTreeMap<String, ServerSpec> {
        specs
            .iter()
            .map(|s| (s.id().to_string(), s.clone()))
            .collect()
    }

    #[test]
    fn a_diff_names_what_is_gone_new_or_changed() {
        let before = by_id(&[
            spec("a", "a.test", "127.0.0.1:1"),
            spec("b", "b.test", "127.0.0.1:2"),
        ]);
        let now = by_id(&[
            spec("b", "b.test", "127.0.0.1:3"),
            spec("c", "c.test", "127.0.0.1:4"),
        ]);
        let change = diff(&before, &now);
        assert_eq!(change.removed, vec!["a".to_string()]);
        let added: Vec<&str> = change.added.iter().map(ServerSpec::id).collect();
        assert_eq!(added, ["b", "c"]);
        assert!(change.kept.is_empty());
        let same = diff(&now, &now);
        assert!(same.is_empty() && same.kept.len() == 2);
    }

    #[test]
    fn the_file_wins_then_the_api_then_docker() {
        let file = FileServers {
            servers: vec![spec("cfg", "cfg.test", "127.0.0.1:10")],
            routes: Vec::new(),
            unknown_host: UnknownHost::Drop,
            settings: EdgeSettings::default(),
            own_listeners: vec![("edge.listen", "127.0.0.1:25565".parse().unwrap())],
        };
        let mut run = BTreeMap::new();
        run.insert(
            Source::Api,
            by_id(&[
                spec("cfg", "other.test", "127.0.0.1:11"),
                spec("steal", "cfg.test", "127.0.0.1:12"),
                spec("api", "API.Test.", "127.0.0.1:13"),
                spec("bad", "", "127.0.0.1:14"),
            ]),
        );
        run.insert(
            Source::Docker,
            by_id(&[
                spec("box", "api.test", "127.0.0.1:15"),
                spec("loop", "loop.test", "127.0.0.1:25565"),
                spec("found", "found.test", "127.0.0.1:16"),
            ]),
        );
        let table = snapshot(&file, &run).table;
        let mut routed: Vec<(String, String)> = table
            .hosts()
            .iter()
            .map(|(h, s)| (h.clone(), s.id.to_string()))
            .collect();
        routed.sort();
        assert_eq!(
            routed,
            [
                ("api.test".to_string(), "api".to_string()),
                ("cfg.test".to_string(), "cfg".to_string()),
                ("found.test".to_string(), "found".to_string()),
            ]
        );
        assert_eq!(
            table.server("cfg").map(|s| s.backend.as_str()),
            Some("127.0.0.1:10")
        );
    }
}
