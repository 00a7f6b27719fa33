//! Waking a server for a joining player, and holding the player meanwhile.
//!
//! The hold keeps the player's TCP connection open (the client shows "Logging in…") and
//! replays their handshake once the server is ready, so it works for every version and
//! for online-mode servers. Twenty players joining together cause one start: the first
//! takes the per-server wake mutex here and the store's wake lock across appliances;
//! everyone else just watches the state.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::{timeout_at, Instant};
use tracing::{info, warn};
use warden_proxy::admission::Admission;
use warden_proxy::status::render::eta_text;
use warden_store::{ServerState, StoreError};

use super::node::Reservation;
use super::patience::patiently;
use super::{eta, ready, Engine, LifecycleError, Slot};

/// Lease on the store's wake lock, renewed every third of it while the wake runs, so a
/// restore of any length keeps it and a dead appliance's lease frees the server quickly.
const WAKE_LEASE: Duration = Duration::from_secs(60);

/// Who asked for a wake: the `cause` label of `warden_wake_requests_total`. Only players
/// spend from the wake budgets.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cause {
    Player(IpAddr),
    Api,
    Migrate,
    /// Another appliance, for a server placed here.
    Peer,
}

impl Cause {
    fn label(self) -> &'static str {
        match self {
            Cause::Player(_) => "player",
            Cause::Api => "api",
            Cause::Migrate => "migrate",
            Cause::Peer => "peer",
        }
    }
}

/// Counts one wake request in `warden_wake_requests_total{cause,result}`.
pub(super) fn count(engine: &Engine, cause: Cause, result: &str) {
    if let Some(c) = engine.wake_requests.get() {
        c.with_label_values(&[cause.label(), result]).inc();
    }
}

/// Starts a wake unless one is already running for this server. A player's wake spends
/// from the wake budgets; if one is empty nothing starts and the player is told why.
pub(super) fn begin(engine: &Engine, slot: &Arc<Slot>, cause: Cause) -> Result<(), String> {
    let Ok(guard) = slot.waking.clone().try_lock_owned() else {
        count(engine, cause, "running");
        after_busy(engine, slot, cause);
        return Ok(());
    };
    start_wake(engine, slot, cause, guard)
}

/// The busy lock may be held by a sleep, an archive or a swap rather than a wake: a join
/// that arrives just then must still wake the server once that is over, or its player
/// would wait in vain. One follow-up per server waits for the lock and wakes the server if
/// it is asleep by then (a wake that ran meanwhile leaves it active, a failed one failed:
/// neither is repeated).
fn after_busy(engine: &Engine, slot: &Arc<Slot>, cause: Cause) {
    if slot.rewake.swap(true, Ordering::AcqRel) {
        return;
    }
    let Some(me) = engine.me.upgrade() else {
        slot.rewake.store(false, Ordering::Release);
        return;
    };
    let slot = slot.clone();
    tokio::spawn(async move {
        let guard = slot.waking.clone().lock_owned().await;
        slot.rewake.store(false, Ordering::Release);
        let state = *slot.state.borrow();
        if matches!(state, ServerState::Sleeping | ServerState::Archived) {
            info!(server = %slot.spec.id, ?state, "a join came while the server was busy going to sleep: waking it now");
            if let Err(why) = start_wake(&me, &slot, cause, guard) {
                *slot.blocked.lock() = Some(why);
                slot.state.send_modify(|_| {});
            }
        }
    });
}

/// Starts a wake under the busy lock `guard` (spending the player's budget first).
fn start_wake(
    engine: &Engine,
    slot: &Arc<Slot>,
    cause: Cause,
    guard: OwnedMutexGuard<()>,
) -> Result<(), String> {
    let Some(me) = engine.me.upgrade() else {
        return Ok(());
    };
    if let Cause::Player(ip) = cause {
        if let Err(e) = engine.budget.spend(ip, &slot.spec.id) {
            count(engine, cause, e.label());
            info!(server = %slot.spec.id, %ip, refused = e.label(), "wake refused: budget spent");
            return Err(e.message(&slot.spec.id));
        }
    }
    count(engine, cause, "started");
    // A new attempt: whatever blocked the last one may be gone.
    *slot.blocked.lock() = None;
    let slot = slot.clone();
    tokio::spawn(async move { run_wake(me, slot, guard).await });
    Ok(())
}

/// Wakes the server for a player the anteroom does not take (pre-1.20.5, or no anteroom)
/// and holds the connection until it is ready (or the hold runs out).
pub(super) async fn wake_and_hold(engine: &Engine, slot: &Arc<Slot>, player: IpAddr) -> Admission {
    let deadline = Instant::now() + engine.settings.hold;
    let mut rx = slot.state.subscribe();
    if let Err(why) = begin(engine, slot, Cause::Player(player)) {
        return Admission::Refuse(why);
    }
    loop {
        let state = *rx.borrow_and_update();
        if let Some(why) = slot.blocked.lock().clone() {
            return Admission::Refuse(format!(
                "{} cannot be started right now: {why}. Please try again in a minute.",
                slot.spec.id
            ));
        }
        match state {
            ServerState::Active => return Admission::Forward,
            ServerState::Failed if slot.waking.try_lock().is_ok() => {
                let reason = slot.record.lock().reason.clone();
                return Admission::Refuse(format!(
                    "{} could not start: {reason}. Please try again later.",
                    slot.spec.id
                ));
            }
            _ => {}
        }
        if timeout_at(deadline, rx.changed()).await.is_err() {
            let eta = eta_text(*slot.eta.lock());
            if slot.queued.load(Ordering::Acquire) {
                return Admission::Refuse(format!(
                    "{} is waiting for a free machine to run on. Please join again in a moment.",
                    slot.spec.id
                ));
            }
            let recovering = slot.record.lock().recovery.is_some();
            let verb = if recovering {
                "is being recovered from its latest backup (its machine went down)"
            } else if state == ServerState::Restoring {
                "is being restored from the archive"
            } else {
                "is starting"
            };
            return Admission::Refuse(format!(
                "{} {verb}; usually ready in {eta}. Please join again in a moment.",
                slot.spec.id
            ));
        }
    }
}

/// Starts (restoring first if needed) and waits until the server answers.
async fn run_wake(engine: Arc<Engine>, slot: Arc<Slot>, mine: OwnedMutexGuard<()>) {
    wake(&engine, &slot).await;
    // Waiters count a failure only once no wake runs; tell them this one is over.
    drop(mine);
    slot.state.send_modify(|_| {});
}

async fn wake(engine: &Arc<Engine>, slot: &Arc<Slot>) {
    // Twice at most: if the owner changed while this appliance was about to start it (its
    // start is fenced by ownership), the new owner is asked instead.
    for _ in 0..2 {
        if !wake_once(engine, slot).await {
            return;
        }
    }
}

/// One attempt; true if ownership moved under it and the wake should be tried again.
async fn wake_once(engine: &Arc<Engine>, slot: &Arc<Slot>) -> bool {
    let id = slot.spec.id.clone();
    // Another appliance may have moved it on (started it, placed it elsewhere): decide
    // from the store's record, not this appliance's last copy (waiting out a failover).
    let patience = engine.settings.store_patience;
    if let Ok(Some(rec)) = patiently(patience, "a wake", || engine.store.get(&id)).await {
        let state = rec.state;
        *slot.record.lock() = rec;
        slot.state.send_replace(state);
        if state == ServerState::Active {
            return false;
        }
    }
    let placed = slot.record.lock().node.clone();
    let owner = match placed {
        Some(node) => node,
        None => match engine.ensure_owner(slot).await {
            Ok(node) => node,
            Err(why) => {
                *slot.blocked.lock() = Some(format!("no node can run it: {why}"));
                slot.state.send_modify(|_| {});
                return false;
            }
        },
    };
    // An archived world can come back anywhere: not on an owner that cannot take it.
    let (owner, room) = engine.place_restore(slot, owner).await;
    if owner != engine.settings.appliance {
        // Its world is on its owner: ask that one, and mirror its progress.
        info!(server = %id, node = %owner, "asking the server's owner to wake it");
        if let Err(e) = request(engine, slot, &owner).await {
            *slot.blocked.lock() = Some(format!("cannot ask {owner} to start it: {e}"));
            slot.state.send_modify(|_| {});
            return false;
        }
        // Placed here meanwhile (its owner could not take it): wake it here.
        return follow(engine, slot).await;
    }
    let lease = match patiently(patience, "a wake", || {
        engine
            .store
            .acquire_wake(&id, &engine.settings.appliance, WAKE_LEASE)
    })
    .await
    {
        Ok(Some(lease)) => lease,
        Ok(None) => return follow(engine, slot).await,
        Err(e) => {
            // Without the store we cannot know whether another appliance is starting it:
            // refuse rather than risk a double start.
            warn!(server = %id, error = %e, "wake refused: state store unavailable");
            *slot.blocked.lock() = Some(
                "the state store is unreachable, and starting it blind could start it twice".into(),
            );
            // Wake the held players so they hear why now, not after the hold.
            slot.state.send_modify(|_| {});
            return false;
        }
    };
    let started = Instant::now();
    let renew = async {
        loop {
            tokio::time::sleep(WAKE_LEASE / 3).await;
            match engine.store.renew_wake(&lease, WAKE_LEASE).await {
                Ok(true) => {}
                // Carrying on is safe: every transition is fenced by the record's epoch.
                Ok(false) => warn!(server = %id, "wake lease lost while starting"),
                Err(e) => warn!(server = %id, error = %e, "could not renew the wake lease"),
            }
        }
    };
    let result = tokio::select! {
        r = start(engine, slot, room) => r,
        never = renew => never,
    };
    let mut again = false;
    match result {
        Err(e)
            if matches!(
                e.cause(),
                LifecycleError::Store(StoreError::NotOwner { .. })
            ) =>
        {
            // Moved to another owner meanwhile (nothing was started here): ask that one.
            info!(server = %id, error = %e, "ownership moved while waking");
            again = true;
        }
        Err(LifecycleError::Refused(why)) => {
            // Nothing was tried (no room on this node): the state stays as it was.
            warn!(server = %id, %why, "wake gave up");
            *slot.blocked.lock() = Some(why);
            slot.state.send_modify(|_| {});
        }
        Err(e) => {
            let reason = e.to_string();
            warn!(server = %id, %reason, "wake failed");
            if super::archive::is_archived(slot) {
                // The world is still only in the archive: stay wakeable by a restore.
                let _ = engine
                    .transition(slot, ServerState::Archived, &reason)
                    .await;
                *slot.blocked.lock() = Some(reason);
                slot.state.send_modify(|_| {});
            } else {
                let _ = engine.transition(slot, ServerState::Failed, &reason).await;
            }
        }
        Ok(()) => {
            info!(server = %id, secs = started.elapsed().as_secs_f64(), "server ready");
            if let Ok(recent) = engine
                .store
                .recent_durations(
                    Some(&id),
                    ServerState::Starting,
                    ServerState::Active,
                    eta::WINDOW,
                )
                .await
            {
                *slot.eta.lock() = eta::estimate(&recent);
            }
        }
    }
    let _ = engine.store.release_wake(&lease).await;
    again
}

async fn start(
    engine: &Engine,
    slot: &Slot,
    room: Option<Reservation>,
) -> Result<(), LifecycleError> {
    let spec = &slot.spec;
    // A stop in progress finishes first; starting over it would race the shutdown.
    let mut rx = slot.state.subscribe();
    let until = Instant::now() + spec.stop_timeout + Duration::from_secs(10);
    while matches!(
        *rx.borrow_and_update(),
        ServerState::Stopping | ServerState::Archiving
    ) {
        if timeout_at(until, rx.changed()).await.is_err() {
            return Err(LifecycleError::Failed(
                "the previous stop did not finish".into(),
            ));
        }
    }
    // Memory on this node first: a wake that does not fit waits here until one does.
    let _room = match room {
        Some(reserved) => reserved,
        None => engine.room(slot).await?,
    };
    if super::archive::is_archived(slot) {
        super::archive::restore(
            engine,
            slot,
            "player joined an archived server",
            ServerState::Starting,
        )
        .await?;
    }
    if *slot.state.borrow() != ServerState::Starting {
        engine
            .transition(slot, ServerState::Starting, "player joined")
            .await?;
    }
    spec.runtime
        .start()
        .await
        .map_err(|e| LifecycleError::from(e).during("start failed"))?;
    slot.local.store(true, std::sync::atomic::Ordering::Relaxed);
    if !ready::wait_ready(
        &spec.backend,
        spec.proxy_protocol,
        spec.runtime.as_ref(),
        Instant::now() + spec.start_timeout,
    )
    .await
    {
        let _ = spec.runtime.stop(spec.stop_timeout).await;
        return Err(LifecycleError::Failed(format!(
            "not ready within {} s",
            spec.start_timeout.as_secs()
        )));
    }
    engine
        .transition(slot, ServerState::Active, "ready")
        .await?;
    Ok(())
}

/// The store's document kind for "please wake this server" between appliances.
const WAKE_REQUEST: &str = "wake-request";

/// Asks the appliance the server is placed on (`owner`) to wake it: over the link's
/// control stream when there is one (taken at once), else through the store, which the
/// owner reads on its next tick.
pub(super) async fn request(
    engine: &Engine,
    slot: &Slot,
    owner: &str,
) -> Result<(), warden_store::StoreError> {
    let id = slot.spec.id.as_str();
    if let Some(dialer) = engine.link.get().filter(|_| engine.link_to(slot).is_some()) {
        let ask = warden_link::control::Ask::Wake {
            server: id.to_string(),
        };
        match dialer.ask(owner, &ask).await {
            Ok(Ok(())) => {
                info!(server = %id, node = %owner, "the owner took the wake over the link");
                return Ok(());
            }
            Ok(Err(why)) => {
                info!(server = %id, node = %owner, %why, "the owner refused the wake over the link; asking through the store")
            }
            Err(e) => {
                info!(server = %id, node = %owner, error = %e, "could not ask over the link; asking through the store")
            }
        }
    }
    let ask = serde_json::json!({ "by": engine.settings.appliance, "at_unix_ms": super::now_ms() });
    engine
        .store
        .put_doc(WAKE_REQUEST, id, &ask.to_string(), false)
        .await
}

/// Wakes the servers placed on this appliance that another appliance asked for.
pub(super) async fn answer_requests(engine: &Arc<Engine>) {
    let Ok(asked) = engine.store.list_docs(WAKE_REQUEST).await else {
        return;
    };
    for (id, _) in asked {
        if let Ok(true) = take(engine, &id, false).await {
            let _ = engine.store.delete_doc(WAKE_REQUEST, &id).await;
        }
    }
}

/// Wakes `id` for another appliance if this one owns it, as the store's record says (the
/// asker saw the placement there; this appliance's copy may be older). `Ok(false)`: a
/// sleep, wake or move holds the server now and `wait` is false, so nothing was done;
/// with `wait`, a wake follows once it is free. `Err`: why not.
pub(super) async fn take(engine: &Arc<Engine>, id: &str, wait: bool) -> Result<bool, String> {
    let me = engine.settings.appliance.as_str();
    let slot = engine
        .slots
        .read()
        .get(id)
        .cloned()
        .ok_or_else(|| format!("no server `{id}` on {me}"))?;
    let rec = engine
        .store
        .get(id)
        .await
        .map_err(|e| format!("reading {id}'s record: {e}"))?
        .ok_or_else(|| format!("{id} has no record"))?;
    if rec.node.as_deref() != Some(me) {
        let owner = rec.node.as_deref().unwrap_or("no node");
        return Err(format!("{id} is owned by {owner}, not {me}"));
    }
    let free = slot.waking.try_lock().is_ok();
    if !free && !wait {
        return Ok(false);
    }
    let state = rec.state;
    if free {
        *slot.record.lock() = rec;
        slot.state.send_replace(state);
    }
    if state != ServerState::Active {
        info!(server = %id, "woken at another appliance's request");
        let _ = begin(engine, &slot, Cause::Peer);
    }
    Ok(true)
}

/// Another appliance holds the wake lock: mirror the store until the server is up. True
/// if meanwhile the server was placed on this appliance (the owner could not take it), so
/// the caller wakes it here.
pub(super) async fn follow(engine: &Engine, slot: &Slot) -> bool {
    let me = engine.settings.appliance.as_str();
    let elsewhere = slot.record.lock().node.as_deref() != Some(me);
    let mut changes = engine.store.watch();
    // A start gets start_timeout; an archive or restore (any length) up to an hour.
    let mut until = Instant::now() + slot.spec.start_timeout;
    let mut last = None;
    loop {
        if let Ok(Some(rec)) = engine.store.get(&slot.spec.id).await {
            let state = rec.state;
            let here = elsewhere && rec.node.as_deref() == Some(me);
            *slot.record.lock() = rec;
            slot.state.send_replace(state);
            if matches!(state, ServerState::Active | ServerState::Failed) {
                return false;
            }
            if here && matches!(state, ServerState::Archived | ServerState::Sleeping) {
                return true;
            }
            if last != Some(state) {
                last = Some(state);
                let patience = match state {
                    ServerState::Archiving | ServerState::Restoring => Duration::from_secs(3600),
                    _ => slot.spec.start_timeout,
                };
                until = Instant::now() + patience;
            }
        }
        if timeout_at(until, changes.changed()).await.is_err() {
            return false;
        }
    }
}
