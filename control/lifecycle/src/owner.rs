//! Every managed server has one owner node from the moment its record exists: the only
//! appliance that starts, stops, archives or restores it. Here: creating the record with
//! the owner placement chose (create-if-absent, so appliances starting together agree on
//! one), claiming a record written before owners existed, and placing a server that no
//! node could take when it was first seen.

use tracing::{debug, info};
use warden_store::{Change, ServerRecord, ServerState, StoreError};

use super::{Engine, ManagedServer, Slot};

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
}
