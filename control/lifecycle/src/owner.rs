//! Every managed server has one owner node from the moment its record exists: the only
//! appliance that starts, stops, archives or restores it. Here: creating the record with
//! the owner placement chose (create-if-absent, so appliances starting together agree on
//! one), claiming a record written before owners existed, placing a server that no
//! node could take when it was first seen, and placing an archived server anew for its
//! restore when its owner cannot take it.

use tracing::{debug, info};
use warden_store::{Change, ServerRecord, ServerState, StoreError};

use super::node::Reservation;
use super::placement;
use super::{now_ms, Engine, ManagedServer, Slot};

impl Engine {
    /// Creates the record of a server first seen here, owned by the node placement chooses
    /// (this one if the server already runs here). If another appliance created it at the
    /// same moment, that record stands and is returned. None if no node can own it yet.
    pub(super) async fn create(
        &self,
        spec: &ManagedServer,
        running: bool,
    ) -> Result<Option<ServerRecord>, StoreError> {
        let me = self.settings.appliance.as_str();
        let owner = match (running && self.is_node(), self.place(spec)) {
            (true, _) => me.to_string(),
            (false, Ok(node)) => node,
            (false, Err(why)) => {
                debug!(server = %spec.id, %why, "not placed yet");
                return Ok(None);
            }
        };
        let (state, reason) = match (running && owner == me, owner == me) {
            (true, _) => (ServerState::Starting, "first seen".to_string()),
            (false, true) => (ServerState::Sleeping, "first seen".to_string()),
            (false, false) => (
                ServerState::Sleeping,
                format!("first seen; placed on {owner}"),
            ),
        };
        let mut record = ServerRecord::new(spec.id.clone(), state, reason);
        record.node = Some(owner.clone());
        match self.store.put_new(record).await {
            Ok(r) => {
                info!(server = %r.id, node = %owner, "server placed");
                Ok(Some(r))
            }
            // Created by another appliance meanwhile (a fleet starting at once): theirs
            // stands, with its owner.
            Err(StoreError::AlreadyExists { .. }) => self.store.get(&spec.id).await,
            Err(e) => Err(e),
        }
    }

    /// Gives a record from before owners existed (`node` unset) an owner: this node if the
    /// server runs here, otherwise the placed one while it rests. A server that runs
    /// somewhere else is left to the appliance running it. Losing a race to another
    /// appliance's claim returns its record.
    pub(super) async fn claim(
        &self,
        spec: &ManagedServer,
        record: ServerRecord,
        running: bool,
    ) -> Result<ServerRecord, StoreError> {
        let resting = matches!(
            record.state,
            ServerState::Sleeping | ServerState::Archived | ServerState::Failed
        );
        let owner = if running && self.is_node() {
            Some(self.settings.appliance.clone())
        } else if resting {
            self.place(spec).ok()
        } else {
            None
        };
        let Some(owner) = owner else {
            return Ok(record);
        };
        let change = Change::to(record.state, format!("owned by {owner}")).with_place(&owner);
        match self.store.apply(&spec.id, record.epoch, change).await {
            Ok(r) => {
                info!(server = %r.id, node = %owner, "server claimed");
                Ok(r)
            }
            Err(StoreError::Conflict { .. }) => {
                Ok(self.store.get(&spec.id).await?.unwrap_or(record))
            }
            Err(e) => Err(e),
        }
    }

    /// Makes sure `slot`'s server has an owner (creating or claiming its record as needed)
    /// and brings this appliance's copy up to date: the owner, or why none can be found.
    pub(super) async fn ensure_owner(&self, slot: &Slot) -> Result<String, String> {
        let running = slot.is_local();
        let found = self
            .store
            .get(&slot.spec.id)
            .await
            .map_err(|e| e.to_string())?;
        let record = match found {
            Some(r) if r.node.is_some() => Some(r),
            Some(r) => Some(
                self.claim(&slot.spec, r, running)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            None => self
                .create(&slot.spec, running)
                .await
                .map_err(|e| e.to_string())?,
        };
        let Some(record) = record else {
            return Err(self
                .place(&slot.spec)
                .err()
                .unwrap_or_else(|| "no node can own it yet".into()));
        };
        let (owner, state) = (record.node.clone(), record.state);
        *slot.record.lock() = record;
        if *slot.state.borrow() != state {
            slot.state.send_replace(state);
        }
        owner.ok_or_else(|| format!("{} runs elsewhere without an owner yet", slot.spec.id))
    }

    /// A world that is only in the archive can come back on any node. When its owner
    /// cannot take it now (not ready, not alive, or without room for it), an API-defined
    /// server is placed best-fit on a ready node with room before it is woken: one
    /// compare-and-set on its epoch, so a racing wake on the old owner is refused. Returns
    /// the node to wake it on, and, when that is this node, the room already reserved.
    pub(super) async fn place_restore(
        &self,
        slot: &Slot,
        owner: String,
    ) -> (String, Option<Reservation>) {
        let (state, epoch) = {
            let r = slot.record.lock();
            (r.state, r.epoch)
        };
        if state != ServerState::Archived || !slot.spec.anywhere {
            return (owner, None);
        }
        let (id, need, now) = (&slot.spec.id, slot.spec.memory_gb, now_ms());
        let room = |capacity: f64, used: f64| placement::fits(capacity, used, need);
        // The owner's record as it is now (the fleet copy may be a renewal old); without
        // the store nothing moves.
        let Ok(found) = self.store.node(&owner).await else {
            return (owner, None);
        };
        let takes = found.as_ref().is_some_and(|n| n.takes_servers(now));
        if owner == self.appliance() {
            // This node's own count is exact: check and reserve in one step, so wakes
            // asked of it together do not all see the same free room.
            if takes {
                if let Ok(reservation) = self.try_room(slot) {
                    return (owner, Some(reservation));
                }
            }
        } else if takes && found.is_some_and(|n| room(n.memory_gb, n.allocated_gb)) {
            return (owner, None);
        }
        let Ok(to) = self.best_fit(&slot.spec, |n| room(n.memory_gb, n.allocated_gb)) else {
            return (owner, None);
        };
        if to == owner {
            return (owner, None);
        }
        let change = Change::to(
            ServerState::Archived,
            format!("placed on {to} for its restore: {owner} cannot take it now"),
        )
        .with_place(&to);
        match self.store.apply(id, epoch, change).await {
            Ok(rec) => {
                info!(server = %id, from = %owner, %to, "archived server placed on another node for its restore");
                *slot.record.lock() = rec;
                // The old owner still holds its copy of the record as it was: tell it.
                let note = serde_json::json!({ "from": owner, "to": to });
                let _ = self
                    .store
                    .put_doc(MOVED, id, &note.to_string(), false)
                    .await;
                (to, None)
            }
            // Changed meanwhile: this wake goes on with the record as it was.
            Err(_) => (owner, None),
        }
    }

    /// Refreshes this appliance's copy of servers another appliance moved away from it
    /// (see [`Engine::place_restore`]), so its API and timers see the new owner.
    pub(super) async fn refresh_moved(&self) {
        let Ok(notes) = self.store.list_docs(MOVED).await else {
            return;
        };
        for (id, note) in notes {
            let from = serde_json::from_str::<serde_json::Value>(&note)
                .ok()
                .and_then(|v| v["from"].as_str().map(str::to_string));
            if from.as_deref() != Some(self.appliance()) {
                continue;
            }
            let slot = self.slots.read().get(&id).cloned();
            if let Some(slot) = slot {
                if slot.waking.try_lock().is_err() {
                    continue;
                }
                if let Ok(Some(rec)) = self.store.get(&id).await {
                    let state = rec.state;
                    *slot.record.lock() = rec;
                    slot.state.send_replace(state);
                }
            }
            let _ = self.store.delete_doc(MOVED, &id).await;
        }
    }
}

/// The store's document kind for "this server was placed elsewhere by another appliance".
const MOVED: &str = "moved";
