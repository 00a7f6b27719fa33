//! Backups of a server's world (issue 14): the copy that exists while it is active, so a
//! lost node loses at most the time since the last backup.
//!
//! When: every `every` of activity (online: RCON `save-off`, `save-all flush`, the copy,
//! then `save-on`, always, whatever happened), at every stop (the world is quiet and the
//! node copy is about to sit unattended), and when an operator asks. Each backup is
//! followed by a prune under the retention policy. A backup of a server runs under its
//! busy lock (no wake, sleep or swap meanwhile) and its backup lock (one backup, restore
//! or prune per server at a time: a prune racing a backup could delete a blob the backup
//! reuses). `warden_archive::backup` does the storing, verifying and restoring.
//!
//! Restoring one (`restore --backup B`) is for a sleeping server: the current world is
//! backed up first (so a restore can be undone), then B is restored, verified before it
//! replaces the world; if B does not verify, the next older one is, and the operator is
//! told which.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tracing::{info, warn};
use warden_archive::backup::{self, Retention, Snapshot, Summary};
use warden_runtime::rcon::Rcon;
use warden_store::ServerState;

use super::events::{Event, EventKind};
use super::{Engine, LifecycleError, Slot};

/// Each RCON exchange of an online backup (`save-all flush` of a big world takes a while).
const RCON_LIMIT: Duration = Duration::from_secs(60);

/// `[backup]`: when backups are taken and which are kept.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// Of activity between scheduled (online) backups.
    pub every: Duration,
    /// Back up at every stop.
    pub at_stop: bool,
    pub retention: Retention,
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            every: Duration::from_secs(6 * 3600),
            at_stop: true,
            retention: Retention::default(),
        }
    }
}

/// What the engine remembers of each server's backups.
#[derive(Default)]
pub(super) struct Tracker {
    servers: parking_lot::Mutex<HashMap<String, Track>>,
}

#[derive(Default)]
struct Track {
    /// One backup, restore or prune of this server at a time.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Activity since the last backup.
    active: Duration,
    last_unix_ms: Option<u64>,
    /// A scheduled backup cannot run (why), said once.
    warned: bool,
}

impl Tracker {
    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Track) -> T) -> T {
        f(self.servers.lock().entry(id.to_string()).or_default())
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.with(id, |t| t.lock.clone())
    }

    /// When the newest backup of `id` this appliance knows of was taken.
    pub(super) fn last(&self, id: &str) -> Option<u64> {
        self.servers.lock().get(id).and_then(|t| t.last_unix_ms)
    }

    fn taken(&self, id: &str, at: u64) {
        self.with(id, |t| {
            t.active = Duration::ZERO;
            t.warned = false;
            t.last_unix_ms = Some(t.last_unix_ms.map_or(at, |l| l.max(at)));
        });
    }
}

impl Engine {
    /// Counts backups in `warden_backups_total{result}` from now on (`ok`, `failed`, and
    /// for restores `restored`, `corrupt`: a backup that did not verify).
    pub fn count_backups(&self, counter: prometheus::IntCounterVec) {
        let _ = self.backup_results.set(counter);
    }

    /// Server `id`'s backups, newest first; `full` reads and hashes every blob.
    pub async fn backups(&self, id: &str, full: bool) -> Result<Vec<Summary>, LifecycleError> {
        let slot = self
            .slots
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| LifecycleError::NotFound(id.to_string()))?;
        let store = slot.spec.archive.clone().ok_or_else(|| {
            LifecycleError::Refused(format!(
                "{id} has no backups: no archive storage, or Warden does not own its data"
            ))
        })?;
        let list = backup::summaries(store.as_ref(), &backup::prefix_for(id), full).await?;
        if let Some(newest) = list.first() {
            self.backups.taken(id, newest.created_unix_ms);
        }
        Ok(list)
    }
}

/// Learns when each server was last backed up (from the storage), for
/// `warden_backup_age_seconds` after a restart. Runs once, in the background.
pub(super) fn learn(engine: &Arc<Engine>) {
    if engine.settings.backup.is_none() {
        return;
    }
    let slots: Vec<Arc<Slot>> = engine.slots.read().values().cloned().collect();
    let engine = engine.clone();
    tokio::spawn(async move {
        for slot in slots {
            let Some(store) = &slot.spec.archive else {
                continue;
            };
            let prefix = backup::prefix_for(&slot.spec.id);
            if let Ok(ids) = backup::list_ids(store.as_ref(), &prefix).await {
                if let Some(at) = ids.last().and_then(|id| backup::id_unix_ms(id)) {
                    engine.backups.with(&slot.spec.id, |t| {
                        t.last_unix_ms = Some(t.last_unix_ms.map_or(at, |l| l.max(at)))
                    });
                }
            }
        }
    });
}

/// Tells webhooks (the engine's event stream).
fn event(engine: &Engine, kind: EventKind, id: &str, backup: Option<&str>, reason: &str) {
    let _ = engine
        .events
        .send(Event::backup(kind, id, backup, reason, super::now_ms()));
}

fn count(engine: &Engine, result: &str) {
    if let Some(c) = engine.backup_results.get() {
        c.with_label_values(&[result]).inc();
    }
}

/// Why `slot` cannot be backed up in `state` now, if it cannot.
pub(super) fn refuse(engine: &Engine, slot: &Slot, state: ServerState) -> Option<String> {
    let id = &slot.spec.id;
    if engine.settings.backup.is_none() {
        return Some("backups are disabled ([backup] enabled = false)".into());
    }
    if slot.spec.archive.is_none() || slot.spec.data.is_none() {
        return Some(format!(
            "{id} cannot be backed up: no archive storage, or Warden does not own its data (a discovered container)"
        ));
    }
    if state == ServerState::Active {
        if matches!(slot.spec.data, Some(super::ServerData::Volume(_))) {
            return Some(format!(
                "{id} runs in a container, whose volume can only be copied while it is stopped: it is backed up at every stop"
            ));
        }
        if slot.spec.rcon.is_none() {
            return Some(format!(
                "{id} has no RCON, so it cannot be copied consistently while it runs: configure rcon, or it is backed up at every stop"
            ));
        }
    }
    None
}

/// Called every tick for a server this appliance runs: counts its activity and starts a
/// scheduled backup once `every` of it has passed.
pub(super) fn on_tick(engine: &Arc<Engine>, slot: &Arc<Slot>) {
    let Some(settings) = &engine.settings.backup else {
        return;
    };
    let id = &slot.spec.id;
    let due = engine.backups.with(id, |t| {
        t.active += engine.settings.tick;
        t.active >= settings.every
    });
    if !due {
        return;
    }
    if let Some(why) = refuse(engine, slot, ServerState::Active) {
        if !engine
            .backups
            .with(id, |t| std::mem::replace(&mut t.warned, true))
        {
            warn!(server = %id, "no scheduled backup: {why}");
        }
        return;
    }
    // Busy (a wake, sleep or swap) or already backing up: the next tick tries again.
    let Ok(busy) = slot.waking.clone().try_lock_owned() else {
        return;
    };
    let Ok(mine) = engine.backups.lock(id).try_lock_owned() else {
        return;
    };
    let (engine, slot) = (engine.clone(), slot.clone());
    tokio::spawn(async move {
        let _ = take(&engine, &slot, "scheduled", &mine).await;
        drop(busy);
    });
}

/// Called by a sleep, under the busy lock, once the server has stopped.
pub(super) async fn at_stop(engine: &Engine, slot: &Slot) {
    if !engine.settings.backup.as_ref().is_some_and(|b| b.at_stop)
        || refuse(engine, slot, ServerState::Sleeping).is_some()
    {
        return;
    }
    let mine = engine.backups.lock(&slot.spec.id).lock_owned().await;
    let _ = take(engine, slot, "at stop", &mine).await;
}

/// An operator's backup, under the claimed busy lock.
pub(super) async fn by_operator(
    engine: &Engine,
    slot: &Slot,
    busy: OwnedMutexGuard<()>,
) -> Result<String, LifecycleError> {
    let mine = engine.backups.lock(&slot.spec.id).lock_owned().await;
    let r = take(engine, slot, "operator", &mine).await;
    drop(busy);
    let s = r?;
    Ok(format!(
        "backup {} taken and verified: {} files, {}, {} new",
        s.id,
        s.stats.files,
        mib(s.stats.bytes),
        mib(s.stats.new_stored_bytes)
    ))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// Takes a backup now (online if the server is active) and prunes. The caller holds the
/// busy lock and the backup lock (`_mine`).
async fn take(
    engine: &Engine,
    slot: &Slot,
    note: &str,
    _mine: &OwnedMutexGuard<()>,
) -> Result<Snapshot, LifecycleError> {
    let id = &slot.spec.id;
    let state = *slot.state.borrow();
    let result = match refuse(engine, slot, state) {
        Some(why) => Err(LifecycleError::Refused(why)),
        None => copy(slot, note, state == ServerState::Active).await,
    };
    match &result {
        Ok(s) => {
            count(engine, "ok");
            engine.backups.taken(id, s.created_unix_ms);
            info!(server = %id, backup = %s.id, note, files = s.stats.files, new_bytes = s.stats.new_stored_bytes, "backup taken and verified");
            let what = format!(
                "({note}): {}, {} new",
                mib(s.stats.bytes),
                mib(s.stats.new_stored_bytes)
            );
            event(engine, EventKind::BackupTaken, id, Some(&s.id), &what);
            prune(engine, slot).await;
        }
        Err(e) => {
            count(engine, "failed");
            warn!(server = %id, note, error = %e, "backup failed");
            event(
                engine,
                EventKind::BackupFailed,
                id,
                None,
                &format!("({note}): {e}"),
            );
        }
    }
    result
}

/// The copy itself; online, between `save-off` and `save-on`.
async fn copy(slot: &Slot, note: &str, online: bool) -> Result<Snapshot, LifecycleError> {
    let spec = &slot.spec;
    let (Some(store), Some(data)) = (spec.archive.as_ref(), spec.data.as_ref()) else {
        return Err(LifecycleError::Failed("no archive storage".into()));
    };
    let prefix = backup::prefix_for(&spec.id);
    let opts = backup::BackupOptions::new(spec.id.clone(), note);
    if !online {
        return data.backup(store.as_ref(), &prefix, &opts).await;
    }
    let Some((addr, password)) = &spec.rcon else {
        return Err(LifecycleError::Failed(
            "no RCON for an online backup".into(),
        ));
    };
    let rcon_err = |e| LifecycleError::Failed(format!("online backup: {e}"));
    let mut rcon = Rcon::connect(addr, password, RCON_LIMIT)
        .await
        .map_err(rcon_err)?;
    let quiet = async {
        rcon.command("save-off").await.map_err(rcon_err)?;
        rcon.command("save-all flush").await.map_err(rcon_err)
    }
    .await;
    let result = match quiet {
        Ok(_) => data.backup(store.as_ref(), &prefix, &opts).await,
        Err(e) => Err(e),
    };
    save_on(spec, rcon).await;
    result
}

/// Turns saving back on, reconnecting if the connection broke during the copy: a server
/// left in `save-off` would lose everything since.
async fn save_on(spec: &super::ManagedServer, mut rcon: Rcon) {
    if rcon.command("save-on").await.is_ok() {
        return;
    }
    let Some((addr, password)) = &spec.rcon else {
        return;
    };
    for attempt in 1..=3 {
        match Rcon::connect(addr, password, RCON_LIMIT).await {
            Ok(mut r) => {
                if r.command("save-on").await.is_ok() {
                    return;
                }
            }
            Err(e) => warn!(server = %spec.id, attempt, error = %e, "backup: RCON for save-on"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    warn!(server = %spec.id, "backup: could not turn saving back on (run `save-on` on its console)");
}

/// Applies the retention policy; a failure is logged (the backups stay).
async fn prune(engine: &Engine, slot: &Slot) {
    let (Some(settings), Some(store)) = (&engine.settings.backup, &slot.spec.archive) else {
        return;
    };
    let prefix = backup::prefix_for(&slot.spec.id);
    if let Err(e) = backup::prune(store.as_ref(), &prefix, &settings.retention).await {
        warn!(server = %slot.spec.id, error = %e, "backup prune failed; nothing more deleted");
    }
}

/// Restores backup `from` (or an older one, if it does not verify) into a sleeping
/// server's world, under the claimed busy lock. The current world is backed up first.
pub(super) async fn restore(
    engine: &Engine,
    slot: &Slot,
    from: &str,
    busy: OwnedMutexGuard<()>,
) -> Result<String, LifecycleError> {
    let spec = &slot.spec;
    let (Some(store), Some(data)) = (spec.archive.as_ref(), spec.data.as_ref()) else {
        return Err(LifecycleError::Refused(format!(
            "{} has no backups: no archive storage, or Warden does not own its data",
            spec.id
        )));
    };
    let mine = engine.backups.lock(&spec.id).lock_owned().await;
    let from = match from {
        "latest" => None,
        id => Some(id),
    };
    // The world it replaces stays restorable: a restore of the wrong backup is undone by
    // restoring this one.
    let before = if data.present().await? {
        let note = format!("before restoring {}", from.unwrap_or("the latest backup"));
        let s = take(engine, slot, &note, &mine).await.map_err(|e| {
            e.during("restore not started: the current world could not be backed up first")
        })?;
        Some(s.id)
    } else {
        None
    };
    info!(server = %spec.id, backup = from.unwrap_or("latest"), "restoring a backup");
    let r = data
        .restore_backup(store.as_ref(), &backup::prefix_for(&spec.id), from)
        .await;
    drop(mine);
    drop(busy);
    let restored = match r {
        Ok(r) => r,
        Err(e) => {
            count(engine, "corrupt");
            return Err(e.during("restore failed, the world was left as it was"));
        }
    };
    for _ in &restored.skipped {
        count(engine, "corrupt");
    }
    count(engine, "restored");
    let mut msg = format!(
        "restored backup {} ({} files, {}); asleep until the next join",
        restored.snapshot.id,
        restored.snapshot.stats.files,
        mib(restored.snapshot.stats.bytes)
    );
    if !restored.skipped.is_empty() {
        let skipped: Vec<String> = restored
            .skipped
            .iter()
            .map(|(id, why)| format!("{id} ({why})"))
            .collect();
        msg = format!(
            "{msg}. NOT restored, failed verification: {}",
            skipped.join("; ")
        );
        warn!(server = %spec.id, "{msg}");
    }
    if let Some(b) = before {
        msg = format!("{msg}. The world it replaced is backup {b}");
    }
    event(
        engine,
        EventKind::BackupRestored,
        &spec.id,
        Some(&restored.snapshot.id),
        &msg,
    );
    Ok(msg)
}
