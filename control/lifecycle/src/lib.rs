//! The lifecycle engine: servers sleep when nobody plays and wake when someone joins.
//!
//! It implements the data plane's [`Lifecycle`] seam. A login to a sleeping server wakes
//! it (once, however many players join at the same moment, and on one appliance only,
//! through the store's wake lock) and holds the player until the server answers a status
//! ping; a server without player sessions for `sleep_after` is stopped; one asleep for
//! `archive_after` is archived (verified before its node copy goes) and restored on the
//! next join. Every change is a compare-and-set transition in the store, so the audit
//! trail, the ETA and other appliances all see the same history.
//!
//! Modules, in the order a join meets them: `wake` (a join wakes a sleeping server; the
//! budgets of `budget` limit how often), `anteroom` (1.20.5+ players wait there),
//! `ready` (a status ping says the server is up), `eta` (the wait shown to players);
//! then `archive` and `data` (a long-asleep world goes to archive storage and comes back),
//! `backup` (scheduled, at-stop and operators' backups, and restoring one), `swap`
//! (warm-swap restart), `migrate` (to another appliance), `reconcile` (the store vs
//! reality at start), `operate` (operators' [`Action`]s and [`ServerView`]), `server` (what
//! the engine knows of a server it manages), `patience` (riding out a store failover) and
//! [`events`] (what happened, for the API, webhooks and metrics). The engine never reads config files or speaks HTTP: the `warden`
//! binary builds its [`ManagedServer`]s and the `warden-api` crate drives its actions.

mod anteroom;
mod archive;
mod backup;
mod budget;
mod command;
pub mod consolidate;
mod data;
mod drain;
mod error;
mod eta;
pub mod events;
pub mod gc;
mod heal;
mod migrate;
mod node;
mod operate;
mod owner;
mod patience;
pub mod placement;
mod ready;
mod reconcile;
mod server;
mod swap;
mod wake;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::events::{Event, EventKind};
use async_trait::async_trait;
use tokio::sync::watch;
use tracing::{info, warn};
use warden_proxy::admission::{Admission, Lifecycle, Player, ServerState as EdgeState};
use warden_proxy::route::Server;
use warden_proxy::sessions::{SessionInfo, SessionObserver, Sessions};
use warden_proxy::status::render::eta_text;
use warden_store::{Change, ServerRecord, ServerState, SessionRecord, StateStore, StoreError};

use std::sync::atomic::Ordering;

pub use backup::BackupSettings;
pub use command::{Command, NotNow};
pub use data::ServerData;
pub use error::LifecycleError;
pub use node::{machine_memory_gb, NodeSettings, DEAD_AFTER, NODE_LEASE};
pub use operate::{Action, ActionRun, ServerView};
pub use server::{LifecycleSettings, ManagedServer};
pub use swap::SwapReport;

/// One managed server's live view: the record as last written, and who waits on it.
struct Slot {
    spec: ManagedServer,
    record: parking_lot::Mutex<ServerRecord>,
    state: watch::Sender<ServerState>,
    /// Held while this appliance runs a wake (start or restore) for the server.
    waking: Arc<tokio::sync::Mutex<()>>,
    eta: parking_lot::Mutex<Option<Duration>>,
    /// Why the last wake could not even begin (e.g. the store is unreachable).
    blocked: parking_lot::Mutex<Option<String>>,
    /// This appliance started the server (or found it running in its runtime), so its
    /// runtime's view counts: another appliance's "not running here" says nothing.
    local: std::sync::atomic::AtomicBool,
    /// A still-running check is in flight.
    checking: std::sync::atomic::AtomicBool,
    /// A join found the busy lock held; a follow-up wakes the server once it is free.
    rewake: std::sync::atomic::AtomicBool,
    /// A wake waits for memory on this node.
    queued: std::sync::atomic::AtomicBool,
}

impl Slot {
    fn is_local(&self) -> bool {
        self.local.load(Ordering::Relaxed)
    }

    /// Says whether a wake waits for capacity, and tells whoever watches the state.
    fn set_queued(&self, queued: bool) {
        if self.queued.swap(queued, Ordering::AcqRel) != queued {
            self.state.send_modify(|_| {});
        }
    }
}

pub struct Engine {
    /// Ordered queue of session records for the store (see [`SessionWrite`]).
    session_writes: tokio::sync::mpsc::UnboundedSender<SessionWrite>,
    /// Where 1.20.5+ players wait while their server wakes; None holds everyone in `wake`.
    anteroom: Option<Arc<anteroom::AnteroomHold>>,
    /// Lets `admit` (which has `&self`) spawn wakes that outlive the joining player.
    me: std::sync::Weak<Engine>,
    /// Servers come and go at run time (Docker label discovery, later the API).
    slots: parking_lot::RwLock<HashMap<String, Arc<Slot>>>,
    store: Arc<dyn StateStore>,
    sessions: Sessions,
    settings: LifecycleSettings,
    /// What this appliance changed (its transitions, its players), for webhooks: each
    /// event is produced by exactly one appliance, so a fleet notifies once.
    events: tokio::sync::broadcast::Sender<Event>,
    /// How often players may wake servers, per source network and per server.
    budget: budget::WakeBudget,
    /// `warden_wake_requests_total{cause,result}`, once the metrics are registered.
    wake_requests: std::sync::OnceLock<prometheus::IntCounterVec>,
    /// This appliance as a node of the fleet.
    node: node::Node,
    /// Each server's backups: activity since the last one, when it was, its lock.
    backups: backup::Tracker,
    /// `warden_backups_total{result}`, once the metrics are registered.
    backup_results: std::sync::OnceLock<prometheus::IntCounterVec>,
    /// `warden_recoveries_total`, once the metrics are registered.
    recoveries: std::sync::OnceLock<prometheus::IntCounter>,
    /// `warden_gc_deleted_total{kind}` and `warden_gc_orphans{kind}`, once registered.
    gc_metrics: std::sync::OnceLock<(prometheus::IntCounterVec, prometheus::IntGaugeVec)>,
    /// Every Docker daemon a server of this appliance used since it started (one per
    /// endpoint), kept after the server is removed: the collector looks there for what
    /// the fleet made and no record owns.
    daemons: parking_lot::Mutex<Vec<warden_runtime::docker::DockerClient>>,
    /// The warm links to other nodes, when this appliance has `[link]`: wakes and sleeps
    /// for servers on linked nodes are asked on the link's control stream.
    link: std::sync::OnceLock<Arc<warden_link::dial::Dialer>>,
}

impl Engine {
    /// Loads (or creates) every managed server's record and reconciles it with what the
    /// runtime really shows, then returns the engine. Call [`Engine::run`] to start the
    /// idle and archive timers.
    pub async fn start(
        servers: Vec<ManagedServer>,
        store: Arc<dyn StateStore>,
        sessions: Sessions,
        settings: LifecycleSettings,
    ) -> Result<Arc<Self>, StoreError> {
        // Sessions this appliance left open when it died are over.
        let _ = store
            .end_appliance_sessions(&settings.appliance, now_ms())
            .await;
        let (session_writes, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(write_sessions(store.clone(), rx));
        let room = settings.anteroom.clone();
        let engine = Arc::new_cyclic(|me: &std::sync::Weak<Engine>| Self {
            anteroom: room.map(|r| anteroom::new(me.clone(), warden_anteroom::Anteroom::new(r))),
            session_writes,
            me: me.clone(),
            slots: parking_lot::RwLock::new(HashMap::new()),
            store,
            sessions: sessions.clone(),
            budget: budget::WakeBudget::new(
                settings.wakes_per_source_per_hour,
                settings.wakes_per_server_per_hour,
            ),
            wake_requests: std::sync::OnceLock::new(),
            backups: Default::default(),
            backup_results: std::sync::OnceLock::new(),
            recoveries: std::sync::OnceLock::new(),
            gc_metrics: std::sync::OnceLock::new(),
            daemons: Default::default(),
            link: std::sync::OnceLock::new(),
            settings,
            events: tokio::sync::broadcast::channel(1024).0,
            node: node::Node::new(),
        });
        // Registered before any server is placed: placement needs this node in the fleet.
        engine.register_at_start().await?;
        for spec in servers {
            engine.add(spec).await?;
        }
        sessions.observe(engine.clone());
        Ok(engine)
    }

    /// Starts managing `spec`: loads its record, or creates it with an owner chosen by
    /// placement (if another appliance creates it at the same moment, its record stands),
    /// and reconciles it with what the runtime really shows. Replaces a server with the
    /// same id.
    pub async fn add(&self, spec: ManagedServer) -> Result<(), StoreError> {
        if let Some(ServerData::Volume(rt)) = &spec.data {
            let mut daemons = self.daemons.lock();
            if !daemons
                .iter()
                .any(|d| d.endpoint() == rt.client().endpoint())
            {
                daemons.push(rt.client().clone());
            }
        }
        let running = spec.runtime.running().await.unwrap_or(false);
        let record = match self.store.get(&spec.id).await? {
            Some(r) if r.node.is_none() => Some(self.claim(&spec, r, running).await?),
            Some(r) => Some(r),
            None => self.create(&spec, running).await?,
        };
        let record = match record {
            Some(r) => {
                reconcile::reconcile(&spec, self.store.as_ref(), &self.settings, r, running).await?
            }
            // No node can own it yet: kept here only, placed when one can.
            None => ServerRecord::new(
                spec.id.clone(),
                ServerState::Sleeping,
                "waiting for a node to own it",
            ),
        };
        let eta = eta::estimate(
            &self
                .store
                .recent_durations(
                    Some(&spec.id),
                    ServerState::Starting,
                    ServerState::Active,
                    eta::WINDOW,
                )
                .await
                .unwrap_or_default(),
        );
        let elsewhere = record
            .node
            .as_deref()
            .is_some_and(|n| n != self.settings.appliance);
        let local = matches!(record.state, ServerState::Active | ServerState::Starting)
            && !elsewhere
            && running;
        // Its own directory, running here, owned by another node: a copy this node ran
        // before it was declared dead and its server moved on. The owner's world is the
        // true one; the stale copy is stopped (and left on disk).
        let stale = elsewhere && running && matches!(spec.data, Some(ServerData::Dir(_)));
        let (state, _) = watch::channel(record.state);
        let slot = Arc::new(Slot {
            spec,
            record: parking_lot::Mutex::new(record),
            state,
            waking: Arc::new(tokio::sync::Mutex::new(())),
            eta: parking_lot::Mutex::new(eta),
            blocked: parking_lot::Mutex::new(None),
            local: std::sync::atomic::AtomicBool::new(local),
            checking: std::sync::atomic::AtomicBool::new(false),
            rewake: std::sync::atomic::AtomicBool::new(false),
            queued: std::sync::atomic::AtomicBool::new(false),
        });
        if stale {
            self.stop_unowned(&slot).await;
        }
        self.slots.write().insert(slot.spec.id.clone(), slot);
        Ok(())
    }

    /// Asks linked nodes over their links' control streams from now on. Set once.
    pub fn use_link(&self, dialer: Arc<warden_link::dial::Dialer>) {
        let _ = self.link.set(dialer);
    }

    /// Wakes a server this node owns for an edge that asked over the link. `Err`: why
    /// not (not here, owned by another node, the store unreadable).
    pub async fn wake_for_peer(self: &Arc<Self>, id: &str) -> Result<(), String> {
        wake::take(self, id, true).await.map(drop)
    }

    /// Puts a server this node owns to sleep for an edge that asked over the link; the
    /// checks of `warden sleep` apply (players online without `force` are refused).
    pub async fn sleep_for_peer(self: &Arc<Self>, id: &str, force: bool) -> Result<(), String> {
        let run = self
            .prepare(id, Command::Sleep { force })
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(run);
        Ok(())
    }

    /// The ids of the servers this node owns.
    pub fn owned_ids(&self) -> Vec<String> {
        self.slots
            .read()
            .values()
            .filter(|s| self.owns(&s.record.lock(), s.is_local()))
            .map(|s| s.spec.id.clone())
            .collect()
    }

    /// The fleet's id, if the engine knows it (see [`LifecycleSettings::fleet`]).
    pub fn fleet(&self) -> Option<&str> {
        Some(self.settings.fleet.as_str()).filter(|f| !f.is_empty())
    }

    /// Stops managing a server (its container is gone). A wake in progress finishes on
    /// its own; the record stays in the store as history.
    pub fn remove(&self, id: &str) -> bool {
        self.slots.write().remove(id).is_some()
    }

    /// Counts servers recovered here after their node died in `counter` from now on.
    pub fn count_recoveries(&self, counter: prometheus::IntCounter) {
        let _ = self.recoveries.set(counter);
    }

    fn count_recovery(&self) {
        if let Some(c) = self.recoveries.get() {
            c.inc();
        }
    }

    /// Counts wake requests (by cause and result) in `counter` from now on.
    pub fn count_wake_requests(&self, counter: prometheus::IntCounterVec) {
        let _ = self.wake_requests.set(counter);
    }

    /// Ids of the managed servers.
    pub fn ids(&self) -> Vec<String> {
        self.slots.read().keys().cloned().collect()
    }

    /// Runs the idle-sleep and archive timers until the process ends.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.tick);
        let mut idle_since: HashMap<String, tokio::time::Instant> = HashMap::new();
        backup::learn(&self);
        loop {
            tick.tick().await;
            let _ = self.store.heartbeat(&self.settings.appliance).await;
            self.renew().await;
            self.drain_step();
            self.nightly_consolidation().await;
            wake::answer_requests(&self).await;
            self.refresh_moved().await;
            let slots: Vec<Arc<Slot>> = self.slots.read().values().cloned().collect();
            for slot in &slots {
                let id = &slot.spec.id;
                let unowned = slot.record.lock().node.is_none();
                if unowned && slot.waking.try_lock().is_ok() {
                    // Not owned yet (no node could take it, or a record from before owners).
                    let _ = self.ensure_owner(slot).await;
                }
                if self.placed_elsewhere(slot) {
                    self.mirror(slot).await;
                    continue;
                }
                let state = *slot.state.borrow();
                if state == ServerState::Active {
                    self.check_still_running(slot);
                    if slot.local.load(std::sync::atomic::Ordering::Relaxed) {
                        backup::on_tick(&self, slot);
                    }
                }
                match state {
                    // Only the appliance running a server stops it.
                    ServerState::Active
                        if !slot.local.load(std::sync::atomic::Ordering::Relaxed) => {}
                    ServerState::Active => {
                        if self.sessions.count(id) > 0 || !self.sessions_idle(id).await {
                            idle_since.remove(id);
                            continue;
                        }
                        let since = *idle_since
                            .entry(id.clone())
                            .or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() >= slot.spec.sleep_after {
                            // The busy lock keeps a sleep from racing a wake or itself.
                            if let Ok(busy) = slot.waking.clone().try_lock_owned() {
                                idle_since.remove(id);
                                let (engine, slot) = (self.clone(), slot.clone());
                                tokio::spawn(async move {
                                    let _ = engine
                                        .sleep(&slot, "no players", "stopped after idle")
                                        .await;
                                    drop(busy);
                                });
                            }
                        }
                    }
                    // Re-placed here after its node died: bring its world back now, so a
                    // join finds it asleep rather than waiting for the restore.
                    // (A failed attempt waits for the next join, which tries again.)
                    ServerState::Archived
                        if slot.record.lock().recovery.is_some()
                            && slot.blocked.lock().is_none() =>
                    {
                        if let Ok(busy) = slot.waking.clone().try_lock_owned() {
                            let (engine, slot) = (self.clone(), slot.clone());
                            tokio::spawn(async move {
                                let _ = archive::restore(
                                    &engine,
                                    &slot,
                                    "recovering on this node",
                                    ServerState::Sleeping,
                                )
                                .await;
                                drop(busy);
                            });
                        }
                    }
                    ServerState::Sleeping => {
                        let asleep_for = Duration::from_millis(
                            now_ms().saturating_sub(slot.record.lock().since_unix_ms),
                        );
                        if slot.spec.archive.is_some() && asleep_for >= slot.spec.archive_after {
                            if let Ok(busy) = slot.waking.clone().try_lock_owned() {
                                let (engine, slot) = (self.clone(), slot.clone());
                                tokio::spawn(async move {
                                    let _ = archive::archive(
                                        &engine,
                                        &slot,
                                        "asleep past archive_after",
                                    )
                                    .await;
                                    drop(busy);
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Placed on another appliance (migrated there): that one runs, sleeps and archives it.
    fn placed_elsewhere(&self, slot: &Slot) -> bool {
        slot.record
            .lock()
            .node
            .as_ref()
            .is_some_and(|n| *n != self.settings.appliance)
    }

    /// Keeps this appliance's copy of a server placed elsewhere current, so its edge shows
    /// the right state and wakes it (through the other appliance) when it sleeps there.
    async fn mirror(&self, slot: &Slot) {
        if slot.waking.try_lock().is_err() {
            return;
        }
        if let Ok(Some(rec)) = self.store.get(&slot.spec.id).await {
            let state = rec.state;
            *slot.record.lock() = rec;
            if *slot.state.borrow() != state {
                slot.state.send_replace(state);
            }
        }
    }

    /// A server that stopped without Warden (it crashed, or an operator stopped it) is
    /// recorded as asleep, so the next join wakes it instead of being sent to a dead port.
    /// Runs in its own task: a slow daemon must not hold up the other servers' timers.
    fn check_still_running(self: &Arc<Self>, slot: &Arc<Slot>) {
        if !slot.local.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        // One check at a time; it does not take the busy lock while asking the runtime, so
        // it never keeps an idle sleep (which needs that lock) from happening.
        if slot
            .checking
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let (engine, slot) = (self.clone(), slot.clone());
        tokio::spawn(async move {
            let stopped = matches!(slot.spec.runtime.running().await, Ok(false));
            // Only if no wake, sleep or swap is under way: those change it on purpose.
            let busy = slot.waking.clone().try_lock_owned();
            if let (true, Ok(_busy)) = (stopped, busy) {
                if *slot.state.borrow() == ServerState::Active {
                    warn!(server = %slot.spec.id, "server stopped outside Warden; marking it asleep");
                    slot.local
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    let _ = engine
                        .transition(
                            &slot,
                            ServerState::Sleeping,
                            "stopped outside Warden (crashed or stopped by hand)",
                        )
                        .await;
                }
            }
            slot.checking
                .store(false, std::sync::atomic::Ordering::Release);
        });
    }

    /// Moves `slot` from its current state to `to`, in the store first (compare-and-set on
    /// the epoch), then in memory. A conflict means another appliance moved it: adopt that.
    async fn transition(
        &self,
        slot: &Slot,
        to: ServerState,
        reason: &str,
    ) -> Result<ServerRecord, StoreError> {
        self.change(slot, Change::to(to, reason)).await
    }

    /// [`Engine::transition`] with the full change (e.g. setting or clearing the archive).
    /// A change to an owned server is fenced by ownership: it applies only while the
    /// record still names this appliance as the owner (and, as always, at this epoch).
    async fn change(&self, slot: &Slot, change: Change) -> Result<ServerRecord, StoreError> {
        let (epoch, owned) = {
            let r = slot.record.lock();
            (r.epoch, r.node.is_some())
        };
        let change = match owned {
            true => change.fenced_by(self.settings.appliance.clone()),
            false => change,
        };
        let patience = self.settings.store_patience;
        let mut result =
            patience::apply(self.store.as_ref(), patience, &slot.spec.id, epoch, &change).await;
        if let Err(StoreError::NotFound { .. }) = result {
            // The store lost the record (a Redis restarted without persistence): register
            // the server again from what this appliance knows, then apply the change.
            let (current, archive, node) = {
                let r = slot.record.lock();
                (r.state, r.archive.clone(), r.node.clone())
            };
            let mut fresh = ServerRecord::new(
                slot.spec.id.clone(),
                current,
                "re-registered: the store had lost this server",
            );
            // Where the world is must survive the loss: without it an archived server
            // would be started on an empty world.
            fresh.archive = archive;
            fresh.node = node;
            match self.store.put_new(fresh).await {
                Ok(rec) => {
                    warn!(server = %rec.id, "server re-registered in the store");
                    result = self.store.apply(&slot.spec.id, rec.epoch, change).await;
                }
                Err(e) => {
                    warn!(server = %slot.spec.id, error = %e, "could not re-register the server")
                }
            }
        }
        self.adopt(slot, result)
    }

    fn adopt(
        &self,
        slot: &Slot,
        result: Result<ServerRecord, StoreError>,
    ) -> Result<ServerRecord, StoreError> {
        match result {
            Ok(rec) => {
                info!(server = %rec.id, state = rec.state.as_str(), reason = %rec.reason, "transition");
                let from = std::mem::replace(&mut *slot.record.lock(), rec.clone()).state;
                if node::holds_memory(from) && !node::holds_memory(rec.state) {
                    self.capacity_changed();
                }
                let _ = self.events.send(Event::transition(
                    &rec.id,
                    Some(from),
                    rec.state,
                    &rec.reason,
                    rec.since_unix_ms,
                ));
                slot.state.send_replace(rec.state);
                Ok(rec)
            }
            Err(e) => {
                warn!(server = %slot.spec.id, error = %e, "transition refused");
                Err(e)
            }
        }
    }

    /// Stops a running server: `why` goes into the stopping transition, `done` into the
    /// sleeping one.
    async fn sleep(&self, slot: &Slot, why: &str, done: &str) -> Result<(), LifecycleError> {
        self.transition(slot, ServerState::Stopping, why).await?;
        match slot.spec.runtime.stop(slot.spec.stop_timeout).await {
            Ok(()) => {
                slot.local
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                self.transition(slot, ServerState::Sleeping, done).await?;
                // Before the node copy sits unattended; still under the busy lock.
                backup::at_stop(self, slot).await;
                Ok(())
            }
            Err(e) => {
                let e = LifecycleError::from(e).during("stop failed");
                let _ = self
                    .transition(slot, ServerState::Failed, &e.to_string())
                    .await;
                Err(e)
            }
        }
    }

    /// Whether no appliance has a player on `id` (the store sums all appliances' counts;
    /// if it can't be asked, the server counts as busy: never cut a player off).
    async fn sessions_idle(&self, id: &str) -> bool {
        matches!(self.store.live_count(id).await, Ok(0))
    }

    fn slot(&self, server: &Server) -> Option<Arc<Slot>> {
        self.slots.read().get(&*server.id).cloned()
    }
}

/// Session records for usage and for idle detection across appliances.
impl SessionObserver for Engine {
    fn opened(&self, s: &SessionInfo) {
        let mut rec = SessionRecord::start(&*s.server, &s.player, &self.settings.appliance);
        rec.id = self.session_id(s);
        rec.player_uuid = s.uuid.map(|u| format!("{u:032x}"));
        rec.start_unix_ms = millis(s.started);
        for e in Event::from_session(&rec) {
            let _ = self.events.send(e);
        }
        let _ = self.session_writes.send(SessionWrite::Started(rec));
    }

    fn closed(&self, s: &SessionInfo) {
        let (id, end) = (self.session_id(s), now_ms());
        let _ = self.events.send(Event::player(
            EventKind::PlayerLeft,
            &s.server,
            &s.player,
            &id,
            end,
        ));
        let _ = self.session_writes.send(SessionWrite::Ended(id, end));
    }
}

/// Session records go to the store in the order sessions opened and closed: written from
/// independent tasks, a short session's end could overtake its start, leaving a live
/// session in the store forever (and its server never idle).
enum SessionWrite {
    Started(SessionRecord),
    Ended(String, u64),
}

async fn write_sessions(
    store: Arc<dyn StateStore>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<SessionWrite>,
) {
    while let Some(w) = rx.recv().await {
        let r = match w {
            SessionWrite::Started(rec) => store.session_started(rec).await,
            SessionWrite::Ended(id, at) => store.session_ended(&id, at).await.map(drop),
        };
        if let Err(e) = r {
            warn!(error = %e, "session record not written");
        }
    }
}

impl Engine {
    fn session_id(&self, s: &SessionInfo) -> String {
        format!("{}-{}-{}", self.settings.appliance, millis(s.started), s.id)
    }
}

fn millis(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[async_trait]
impl Lifecycle for Engine {
    fn state(&self, server: &Server) -> EdgeState {
        match self.slot(server) {
            None => EdgeState::Active,
            Some(slot) => edge_state(*slot.state.borrow()),
        }
    }

    fn eta(&self, server: &Server) -> Option<Duration> {
        self.slot(server).and_then(|s| *s.eta.lock())
    }

    fn backend(&self, server: &Server) -> Option<Arc<str>> {
        let slot = self.slot(server)?;
        self.forward_to(&slot)
    }

    fn link(&self, server: &Server) -> Option<(Arc<str>, Arc<str>)> {
        let slot = self.slot(server)?;
        self.link_to(&slot)
    }

    async fn admit(&self, server: &Arc<Server>, player: &Player) -> Admission {
        let Some(slot) = self.slot(server) else {
            return Admission::Forward;
        };
        if *slot.state.borrow() == ServerState::Active {
            return Admission::Forward;
        }
        let anteroom = self.anteroom.is_some() && warden_anteroom::supports(player.protocol);
        if *slot.state.borrow() == ServerState::Swapping && !anteroom {
            return Admission::Refuse(format!(
                "{} is restarting; rejoin in {}.",
                slot.spec.id,
                eta_text(*slot.eta.lock())
            ));
        }
        match &self.anteroom {
            Some(room) if anteroom => {
                // The wake starts once the guest has shown it is a real client (see
                // `anteroom`); a budget already spent is said now, at login.
                if slot.waking.try_lock().is_ok() {
                    if let Err(e) = self.budget.check(player.addr.ip(), &slot.spec.id) {
                        wake::count(self, wake::Cause::Player(player.addr.ip()), e.label());
                        info!(server = %slot.spec.id, player = %warden_proxy::wire::log_safe(&player.name), refused = e.label(), "wake refused: budget spent");
                        return Admission::Refuse(e.message(&slot.spec.id));
                    }
                }
                info!(server = %slot.spec.id, player = %warden_proxy::wire::log_safe(&player.name), "join waits in the anteroom");
                Admission::Hold(room.clone())
            }
            _ => {
                info!(server = %slot.spec.id, player = %warden_proxy::wire::log_safe(&player.name), "join wakes the server");
                wake::wake_and_hold(self, &slot, player.addr.ip()).await
            }
        }
    }
}

/// The store's state as the data plane shows it.
fn edge_state(s: ServerState) -> EdgeState {
    match s {
        ServerState::Starting => EdgeState::Starting,
        ServerState::Active => EdgeState::Active,
        ServerState::Stopping => EdgeState::Stopping,
        ServerState::Sleeping => EdgeState::Sleeping,
        ServerState::Archiving => EdgeState::Archiving,
        ServerState::Archived => EdgeState::Archived,
        ServerState::Restoring => EdgeState::Restoring,
        ServerState::Swapping => EdgeState::Swapping,
        ServerState::Failed => EdgeState::Failed,
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
