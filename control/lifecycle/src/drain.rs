//! Draining a node: an operator's `warden node drain NODE` (or the consolidation pass)
//! marks it `draining` in the store; the node itself then moves every server it owns to
//! other nodes with the existing migration (players of a running server go through the
//! anteroom and come back on the new node), `moves_at_once` at a time, until it owns
//! nothing. A server that cannot move (no other node may run it, no archive storage) stays
//! and is logged once; the node stays `draining` (placement skips it) until uncordoned.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::{info, warn};
use warden_store::{NodeState, ServerState};

use super::{Engine, Slot};

impl Engine {
    /// Whether this node's record says it is draining.
    pub(super) fn draining(&self) -> bool {
        let me = self.appliance();
        self.node
            .fleet
            .read()
            .iter()
            .any(|n| n.id == me && n.state == NodeState::Draining)
    }

    /// Called each tick: while this node drains, starts the next migrations its budget
    /// allows.
    pub(super) fn drain_step(self: &Arc<Self>) {
        if !self.draining() {
            self.node.drained.store(false, Ordering::Relaxed);
            return;
        }
        let budget = self.settings.node.moves_at_once.max(1);
        let slots: Vec<Arc<Slot>> = self.slots.read().values().cloned().collect();
        let mut owned = 0;
        for slot in slots {
            if !self.owns(&slot.record.lock(), slot.is_local()) {
                continue;
            }
            owned += 1;
            if self.node.moving.load(Ordering::Acquire) >= budget {
                continue;
            }
            let state = *slot.state.borrow();
            if !matches!(
                state,
                ServerState::Active | ServerState::Sleeping | ServerState::Archived
            ) {
                // Mid-transition: the next round sees where it settled.
                continue;
            }
            let to = match self.drain_target(&slot) {
                Ok(to) => to,
                Err(why) => {
                    self.stuck(&slot.spec.id, &why);
                    continue;
                }
            };
            if let Err(why) = self.check_migrate(&slot, &to) {
                self.stuck(&slot.spec.id, &why);
                continue;
            }
            let Ok(busy) = slot.waking.clone().try_lock_owned() else {
                continue;
            };
            self.node.moving.fetch_add(1, Ordering::AcqRel);
            info!(server = %slot.spec.id, %to, "draining: moving the server");
            let engine = self.clone();
            tokio::spawn(async move {
                match engine.migrate(&slot, &to, busy).await {
                    Ok(said) => info!(server = %slot.spec.id, %to, "draining: {said}"),
                    Err(e) => {
                        warn!(server = %slot.spec.id, %to, error = %e, "draining: the move failed; it is tried again")
                    }
                }
                engine.node.moving.fetch_sub(1, Ordering::AcqRel);
            });
        }
        if owned == 0 && !self.node.drained.swap(true, Ordering::AcqRel) {
            info!("drained: this node owns no servers any more");
        }
    }

    /// Where a draining node's server goes: the best fit among the other ready nodes that
    /// can run it (any, for an API-defined server; those in its `node_backends` otherwise),
    /// nodes that already hold servers first, so empty nodes stay empty (what consolidation
    /// planned, and what lets the capacity controller give them back).
    fn drain_target(&self, slot: &Slot) -> Result<String, String> {
        let me = self.appliance();
        let spec = &slot.spec;
        let can = |n: &warden_store::NodeRecord| {
            n.id != me && (spec.anywhere || spec.node_backends.contains_key(&n.id))
        };
        // A running server only goes to a used node with room for it now.
        let running = super::node::holds_memory(*slot.state.borrow());
        let used = |n: &warden_store::NodeRecord| {
            n.servers > 0
                && (!running || super::placement::fits(n.memory_gb, n.allocated_gb, spec.memory_gb))
        };
        if let Ok(to) = self.best_fit(spec, |n| can(n) && used(n)) {
            return Ok(to);
        }
        self.best_fit(spec, can).map_err(|why| {
            if spec.anywhere {
                why
            } else {
                format!(
                    "{why} (a server from this node's config can only move to a node in its node_backends)"
                )
            }
        })
    }

    /// Logs why a server cannot leave, once per reason.
    fn stuck(&self, id: &str, why: &str) {
        let mut stuck = self.node.stuck.lock();
        if stuck.get(id).map(String::as_str) != Some(why) {
            warn!(server = %id, %why, "draining: this server cannot move");
            stuck.insert(id.to_string(), why.to_string());
        }
    }
}
