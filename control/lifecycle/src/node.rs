//! This appliance as a node of the fleet: it registers in the store when the engine starts,
//! renews its lease while it runs (reporting the memory its servers use), keeps a copy of
//! every node's record for placement and forwarding, and, with a configured capacity,
//! never starts more servers than it holds (a wake that does not fit waits, and is counted).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};
use warden_store::{
    NodeRecord, NodeReport, NodeRole, NodeState, ServerRecord, ServerState, StoreError,
};

use super::placement::{self, Need, NodeLoad};
use super::{now_ms, Engine, LifecycleError, ManagedServer, Slot};

/// A node is alive while its lease runs: renewed every [`RENEW_EVERY`], it outlives a
/// missed renewal or two.
pub const NODE_LEASE: Duration = Duration::from_secs(10);
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How long a wake waits for memory on its node before it gives up (the anteroom's
/// players are told; a new join tries again).
const CAPACITY_WAIT: Duration = Duration::from_secs(15 * 60);
/// How long past its lease a silent node is declared dead, by default: three leases, so a
/// long GC pause or a store failover does not move a world.
pub const DEAD_AFTER: Duration = Duration::from_secs(30);
/// Memory a machine keeps for itself when `memory_gb` is not configured.
const SYSTEM_RESERVE_GB: f64 = 1.0;

/// States in which a server holds its node's memory.
const RUNNING: [ServerState; 4] = [
    ServerState::Starting,
    ServerState::Active,
    ServerState::Swapping,
    ServerState::Stopping,
];

/// Whether a server in `state` holds its node's memory.
pub(super) fn holds_memory(state: ServerState) -> bool {
    RUNNING.contains(&state)
}

/// What this appliance is as a node.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// `edge` (accepts players), `node` (runs servers), or both.
    pub roles: Vec<NodeRole>,
    /// Memory for game servers, GB.
    pub memory_gb: f64,
    /// Hold back wakes that do not fit `memory_gb`. Off when the capacity was not
    /// configured (it is then the machine's RAM, used for placement only), so a single box
    /// runs as many servers at once as it did before nodes existed.
    pub enforce_capacity: bool,
    /// Where other appliances reach this node's servers (an IP address or host name).
    pub address: String,
    pub labels: BTreeMap<String, String>,
    /// The `warden` version, shown in `warden nodes`.
    pub version: String,
    /// Take the registration over from the process this one upgrades (`run --upgrade`).
    pub takeover: bool,
    /// How long after another node's lease lapsed it is declared dead and its servers are
    /// recovered elsewhere; None: never (an operator recovers by hand).
    pub dead_after: Option<Duration>,
    /// The disruption budget of a drain: migrations under way at once.
    pub moves_at_once: usize,
    /// When the nightly consolidation pass runs, seconds after midnight UTC; None: never.
    pub consolidate_at: Option<u32>,
    /// The UDP port where this node accepts QUIC links from edges (`[node] link = "quic"`);
    /// None: edges reach its servers over TCP.
    pub link_port: Option<u16>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            roles: vec![NodeRole::Edge, NodeRole::Node],
            memory_gb: machine_memory_gb(),
            enforce_capacity: false,
            address: "127.0.0.1".into(),
            labels: BTreeMap::new(),
            version: String::new(),
            takeover: false,
            dead_after: Some(DEAD_AFTER),
            moves_at_once: 1,
            consolidate_at: Some(4 * 3600),
            link_port: None,
        }
    }
}

/// This machine's RAM less 1 GiB for the system, in GB (1024 if `/proc/meminfo` cannot be
/// read: no limit in practice).
pub fn machine_memory_gb() -> f64 {
    let kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    match kb {
        Some(kb) => ((kb as f64 / 1_048_576.0) - SYSTEM_RESERVE_GB).max(0.5),
        None => 1024.0,
    }
}

/// This engine's node state: its process identity, the fleet as last read, and the memory
/// its wakes have reserved.
pub(super) struct Node {
    pub(super) instance: String,
    pub(super) fleet: parking_lot::RwLock<Vec<NodeRecord>>,
    /// Memory held by wakes under way (restoring or starting), by server.
    reserved: parking_lot::Mutex<HashMap<String, f64>>,
    freed: tokio::sync::Notify,
    renewed: parking_lot::Mutex<Option<Instant>>,
    /// Registered since this process started (a store down at start delays it).
    registered: std::sync::atomic::AtomicBool,
    /// The last renewal refusal logged, so it is logged once.
    refused: parking_lot::Mutex<Option<String>>,
    /// `warden_capacity_waits_total`, once the metrics are registered.
    pub(super) waits: std::sync::OnceLock<prometheus::IntCounter>,
    /// Migrations under way for a drain.
    pub(super) moving: std::sync::atomic::AtomicUsize,
    /// Drained: said once.
    pub(super) drained: std::sync::atomic::AtomicBool,
    /// Why each server that cannot leave a draining node is stuck (logged once).
    pub(super) stuck: parking_lot::Mutex<HashMap<String, String>>,
    /// The day whose nightly consolidation this appliance last tried.
    pub(super) consolidated: parking_lot::Mutex<Option<String>>,
}

impl Node {
    pub(super) fn new() -> Self {
        Node {
            instance: random_instance(),
            fleet: Default::default(),
            reserved: Default::default(),
            freed: tokio::sync::Notify::new(),
            renewed: Default::default(),
            registered: Default::default(),
            refused: Default::default(),
            waits: Default::default(),
            moving: Default::default(),
            drained: Default::default(),
            stuck: Default::default(),
            consolidated: Default::default(),
        }
    }
}

fn random_instance() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:08x}-{:016x}", std::process::id(), h.finish())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

fn pid_alive(pid: u32) -> bool {
    pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Gives a wake's reserved memory back when the wake ends.
pub(super) struct Reservation {
    engine: std::sync::Weak<Engine>,
    id: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.upgrade() {
            engine.node.reserved.lock().remove(&self.id);
            engine.node.freed.notify_waiters();
        }
    }
}

impl Engine {
    /// Whether this appliance runs servers.
    pub(super) fn is_node(&self) -> bool {
        self.settings.node.roles.contains(&NodeRole::Node)
    }

    /// The record this process registers (or renews) as.
    fn own_record(&self) -> NodeRecord {
        let n = &self.settings.node;
        let now = now_ms();
        NodeRecord {
            id: self.appliance().to_string(),
            address: n.address.clone(),
            roles: n.roles.clone(),
            memory_gb: n.memory_gb,
            labels: n.labels.clone(),
            version: n.version.clone(),
            state: NodeState::Ready,
            since_unix_ms: now,
            registered_unix_ms: now,
            lease_until_unix_ms: now + NODE_LEASE.as_millis() as u64,
            instance: self.node.instance.clone(),
            host: host_name(),
            pid: std::process::id(),
            allocated_gb: self.allocated_gb(None),
            servers: self.owned_count(),
            waiting_gb: self.waiting_gb(),
            link_port: n.link_port,
        }
    }

    /// Registers at start: refused for good if another live process has this node's id
    /// (or the settings are invalid); a store that cannot be reached only delays it (the
    /// lease renewal registers once the store answers).
    pub(super) async fn register_at_start(&self) -> Result<(), StoreError> {
        match self.register().await {
            Err(e @ (StoreError::NodeTaken { .. } | StoreError::Invalid(_))) => Err(e),
            Err(e) => {
                warn!(error = %e, "not registered as a node yet; retrying with the lease renewals");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Registers this appliance as a node. A live registration of its id by another process
    /// is taken over only if that process is this one's predecessor (gone from this
    /// machine, or upgraded from); otherwise this waits for its lease to lapse and then
    /// refuses: two live appliances must not share an id.
    pub(super) async fn register(&self) -> Result<(), StoreError> {
        let until = Instant::now() + NODE_LEASE + Duration::from_secs(2);
        let mut told = false;
        loop {
            let current = self.store.node(self.appliance()).await?;
            let replace = current
                .filter(|c| {
                    c.instance != self.node.instance
                        && (self.settings.node.takeover
                            || (c.host == host_name() && !pid_alive(c.pid)))
                })
                .map(|c| c.instance);
            match self
                .store
                .register_node(self.own_record(), replace.as_deref())
                .await
            {
                Ok(rec) => {
                    info!(node = %rec.id, state = %rec.state, memory_gb = rec.memory_gb, address = %rec.address, "registered as a node");
                    *self.node.renewed.lock() = Some(Instant::now());
                    self.node
                        .registered
                        .store(true, std::sync::atomic::Ordering::Release);
                    self.refresh_fleet().await;
                    return Ok(());
                }
                Err(e @ StoreError::NodeTaken { .. }) if Instant::now() < until => {
                    if !told {
                        warn!(error = %e, "waiting for the other registration's lease to lapse");
                        told = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Renews the lease (every [`RENEW_EVERY`]) and re-reads the fleet. Called each tick.
    pub(super) async fn renew(&self) {
        let due = self
            .node
            .renewed
            .lock()
            .is_none_or(|t| t.elapsed() >= RENEW_EVERY);
        if !due {
            return;
        }
        let report = NodeReport {
            lease_until_unix_ms: now_ms() + NODE_LEASE.as_millis() as u64,
            allocated_gb: self.allocated_gb(None),
            servers: self.owned_count(),
            waiting_gb: self.waiting_gb(),
        };
        let registered = self
            .node
            .registered
            .load(std::sync::atomic::Ordering::Acquire);
        let renewed = match registered {
            true => {
                self.store
                    .renew_node(self.appliance(), &self.node.instance, report)
                    .await
            }
            false => Err(StoreError::NotFound {
                kind: "node",
                id: self.appliance().to_string(),
            }),
        };
        let result = match renewed {
            // The store lost it (a Redis restarted empty): register again.
            Err(StoreError::NotFound { .. }) => self.register().await,
            // Declared dead while this process lived: stop acting, then come back empty.
            Err(e @ StoreError::NodeFenced { .. }) => match self.store.node(self.appliance()).await
            {
                Ok(Some(n)) if n.state == NodeState::Dead && n.instance == self.node.instance => {
                    self.fenced().await;
                    Ok(())
                }
                _ => Err(e),
            },
            other => other.map(drop),
        };
        match result {
            Ok(()) => {
                *self.node.renewed.lock() = Some(Instant::now());
                *self.node.refused.lock() = None;
            }
            Err(e) => {
                let text = e.to_string();
                let mut last = self.node.refused.lock();
                if last.as_deref() != Some(text.as_str()) {
                    warn!(error = %text, "node lease not renewed");
                    *last = Some(text);
                }
            }
        }
        self.refresh_fleet().await;
        self.heal().await;
    }

    async fn refresh_fleet(&self) {
        if let Ok(nodes) = self.store.nodes().await {
            *self.node.fleet.write() = nodes;
        }
    }

    /// Whether this node is ready for new servers (as the fleet was last read).
    pub(super) fn takes_servers_now(&self) -> bool {
        let (me, now) = (self.appliance(), now_ms());
        self.node
            .fleet
            .read()
            .iter()
            .any(|n| n.id == me && n.takes_servers(now))
    }

    /// Every node as last read from the store.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.node.fleet.read().clone()
    }

    /// Counts waits for capacity in `counter` from now on.
    pub fn count_capacity_waits(&self, counter: prometheus::IntCounter) {
        let _ = self.node.waits.set(counter);
    }

    /// Whether this appliance owns the server of `rec` (or, for a record from before
    /// owners, runs it).
    pub(super) fn owns(&self, rec: &ServerRecord, local: bool) -> bool {
        match &rec.node {
            Some(n) => n == self.appliance(),
            None => local,
        }
    }

    fn owned_count(&self) -> u32 {
        let slots = self.slots.read();
        let n = slots
            .values()
            .filter(|s| self.owns(&s.record.lock(), s.is_local()))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Memory of the wakes on this node waiting for room, GB.
    fn waiting_gb(&self) -> f64 {
        self.slots
            .read()
            .values()
            .filter(|s| s.queued.load(std::sync::atomic::Ordering::Acquire))
            .map(|s| s.spec.memory_gb)
            .sum()
    }

    /// Memory of the servers this node runs or is waking, GB (leaving `except` out).
    pub(super) fn allocated_gb(&self, except: Option<&str>) -> f64 {
        let reserved = self.node.reserved.lock();
        self.allocated_with(&reserved, except)
    }

    fn allocated_with(&self, reserved: &HashMap<String, f64>, except: Option<&str>) -> f64 {
        let slots = self.slots.read();
        slots
            .values()
            .filter(|s| Some(s.spec.id.as_str()) != except)
            .filter(|s| {
                let rec = s.record.lock();
                self.owns(&rec, s.is_local())
                    && (RUNNING.contains(&rec.state) || reserved.contains_key(&s.spec.id))
            })
            .map(|s| s.spec.memory_gb)
            .sum()
    }

    /// A server left the states that hold memory: wakes waiting for it may go.
    pub(super) fn capacity_changed(&self) {
        self.node.freed.notify_waiters();
    }

    /// Reserves `slot`'s memory on this node if it fits now (or capacity is not enforced);
    /// else the memory in use, GB. Checking and reserving are one step, so wakes arriving
    /// together cannot all see the same free room.
    pub(super) fn try_room(&self, slot: &Slot) -> Result<Reservation, f64> {
        let (id, need) = (&slot.spec.id, slot.spec.memory_gb);
        let mut reserved = self.node.reserved.lock();
        let used = self.allocated_with(&reserved, Some(id));
        if !self.settings.node.enforce_capacity
            || placement::fits(self.settings.node.memory_gb, used, need)
        {
            reserved.insert(id.clone(), need);
            return Ok(Reservation {
                engine: self.me.clone(),
                id: id.clone(),
            });
        }
        Err(used)
    }

    /// Reserves `slot`'s memory on this node for a wake, waiting while it does not fit.
    /// Refused (the player is told) after [`CAPACITY_WAIT`].
    pub(super) async fn room(&self, slot: &Slot) -> Result<Reservation, LifecycleError> {
        let (id, need, capacity) = (
            &slot.spec.id,
            slot.spec.memory_gb,
            self.settings.node.memory_gb,
        );
        let deadline = Instant::now() + CAPACITY_WAIT;
        let mut waited = false;
        loop {
            let freed = self.node.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let used = match self.try_room(slot) {
                Ok(reservation) => {
                    if waited {
                        info!(server = %id, capacity_gb = capacity, "capacity freed: starting");
                        slot.set_queued(false);
                    }
                    return Ok(reservation);
                }
                Err(used) => used,
            };
            if !waited {
                waited = true;
                if let Some(c) = self.node.waits.get() {
                    c.inc();
                }
                info!(server = %id, need_gb = need, used_gb = used, capacity_gb = capacity, "no room on this node: the wake waits for capacity");
                slot.set_queued(true);
            }
            let recheck = (Instant::now() + Duration::from_secs(1)).min(deadline);
            let _ = tokio::time::timeout_at(recheck, freed).await;
            if Instant::now() >= deadline {
                slot.set_queued(false);
                return Err(LifecycleError::Refused(format!(
                    "no room on {}: {used} of {capacity} GB in use, {need} GB needed",
                    self.appliance()
                )));
            }
        }
    }

    /// The nodes that can take a new server now, with their loads (this node's from its
    /// own exact count).
    fn candidates(&self) -> Vec<NodeRecord> {
        let now = now_ms();
        let mut nodes: Vec<NodeRecord> = self
            .node
            .fleet
            .read()
            .iter()
            .filter(|n| n.takes_servers(now))
            .cloned()
            .collect();
        for n in nodes.iter_mut().filter(|n| n.id == self.appliance()) {
            n.allocated_gb = self.allocated_gb(None);
            n.servers = self.owned_count();
        }
        nodes
    }

    /// Which node should own `spec` if it were created now: this one for a server only
    /// this appliance defines (its config or its Docker daemon), best-fit over the fleet
    /// for one every appliance knows (API-defined). The reason when none can.
    pub(super) fn place(&self, spec: &ManagedServer) -> Result<String, String> {
        if !spec.anywhere {
            if self.is_node() {
                return Ok(self.appliance().to_string());
            }
            return Err(format!(
                "{} is defined in this appliance's config, which does not run servers \
                 (roles lacks \"node\"): a node that defines it too owns it once it starts",
                spec.id
            ));
        }
        self.best_fit(spec, |_| true)
    }

    /// The best-fit node for `spec` among the nodes that take servers now and `allow`.
    pub(super) fn best_fit(
        &self,
        spec: &ManagedServer,
        allow: impl Fn(&NodeRecord) -> bool,
    ) -> Result<String, String> {
        let nodes: Vec<NodeRecord> = self.candidates().into_iter().filter(|n| allow(n)).collect();
        let loads: Vec<NodeLoad<'_>> = nodes
            .iter()
            .map(|n| NodeLoad {
                id: &n.id,
                capacity_gb: n.memory_gb,
                allocated_gb: n.allocated_gb,
                servers: n.servers,
                labels: &n.labels,
            })
            .collect();
        let need = Need {
            memory_gb: spec.memory_gb,
            labels: &spec.node_labels,
        };
        placement::place(&loads, need)
            .map(|i| nodes[i].id.clone())
            .map_err(|r| r.message(spec.memory_gb))
    }

    /// Why a fleet-wide server of `memory_gb` with `labels` could not be placed on any node
    /// (for refusing it at creation); None if some node can take it.
    pub fn unplaceable(&self, memory_gb: f64, labels: &BTreeMap<String, String>) -> Option<String> {
        let nodes = self.candidates();
        if nodes.is_empty() {
            // Nodes may still be starting: creation does not wait for them.
            return None;
        }
        let loads: Vec<NodeLoad<'_>> = nodes
            .iter()
            .map(|n| NodeLoad {
                id: &n.id,
                capacity_gb: n.memory_gb,
                allocated_gb: 0.0,
                servers: n.servers,
                labels: &n.labels,
            })
            .collect();
        placement::place(&loads, Need { memory_gb, labels })
            .err()
            .map(|r| r.message(memory_gb))
    }

    /// Where this appliance forwards players of `slot` when another node owns it: the
    /// server's configured address on that node, or the owner's address with the server's
    /// port. None: it runs here (or the owner is unknown yet).
    pub(super) fn forward_to(&self, slot: &Slot) -> Option<Arc<str>> {
        let owner = slot.record.lock().node.clone()?;
        if owner == self.appliance() {
            return None;
        }
        if let Some(b) = slot.spec.node_backends.get(&owner) {
            return Some(Arc::from(b.as_str()));
        }
        let fleet = self.node.fleet.read();
        let node = fleet.iter().find(|n| n.id == owner)?;
        Some(Arc::from(with_host(&slot.spec.backend, &node.address)))
    }
}

impl Engine {
    /// The owner node's link (`(node, host:port)`) when the server runs on another node
    /// that accepts QUIC links; None: reach it over TCP (or it runs here).
    pub(super) fn link_to(&self, slot: &Slot) -> Option<(Arc<str>, Arc<str>)> {
        let owner = slot.record.lock().node.clone()?;
        if owner == self.appliance() {
            return None;
        }
        let fleet = self.node.fleet.read();
        let node = fleet.iter().find(|n| n.id == owner)?;
        let port = node.link_port?;
        Some((
            Arc::from(owner.as_str()),
            Arc::from(with_host(&format!("x:{port}"), &node.address)),
        ))
    }

    /// Every other live node that accepts links, as `(id, host:port)`: the links an edge
    /// keeps warm.
    pub fn fleet_links(&self) -> Vec<(String, String)> {
        let now = now_ms();
        self.node
            .fleet
            .read()
            .iter()
            .filter(|n| n.id != self.appliance() && n.live(now) && n.state != NodeState::Dead)
            .filter_map(|n| {
                let port = n.link_port?;
                Some((n.id.clone(), with_host(&format!("x:{port}"), &n.address)))
            })
            .collect()
    }
}

/// `backend` (`host:port`) with its host replaced by `host`.
pub(super) fn with_host(backend: &str, host: &str) -> String {
    let port = backend.rsplit_once(':').map_or("25565", |(_, p)| p);
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_address_keeps_the_server_port() {
        assert_eq!(with_host("127.0.0.1:25570", "10.0.0.2"), "10.0.0.2:25570");
        assert_eq!(with_host("[::1]:25570", "fd00::2"), "[fd00::2]:25570");
        assert_eq!(
            with_host("mc.internal:25565", "node-b.lan"),
            "node-b.lan:25565"
        );
    }

    #[test]
    fn machine_memory_leaves_a_gigabyte() {
        let gb = machine_memory_gb();
        assert!(gb > 0.0 && gb.is_finite(), "{gb}");
    }

    #[test]
    fn instances_differ() {
        assert_ne!(random_instance(), random_instance());
    }
}
