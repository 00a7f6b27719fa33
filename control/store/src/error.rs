//! One error type for both stores, so the lifecycle engine can tell "try
//! again later" (`Unavailable`), "someone else moved first" (`Conflict`) and
//! "you asked for something wrong" apart without knowing which store runs.

use crate::model::ServerState;
use crate::node::NodeState;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing store cannot be reached or did not answer in time. Safe to
    /// retry later; callers must not assume the write did or did not happen
    /// unless the method says it is idempotent.
    #[error("state store unavailable: {0}")]
    Unavailable(String),

    /// Compare-and-set lost: the record moved on since the caller read it.
    #[error("server '{id}' changed concurrently: expected epoch {expected}, found epoch {actual} (state {state})")]
    Conflict {
        id: String,
        expected: u64,
        actual: u64,
        state: ServerState,
    },

    /// A change fenced by ownership, made by a node that no longer (or never) owned the
    /// server: only the owner runs, stops, archives or restores it.
    #[error("server '{id}' is owned by {owner}, not {by}")]
    NotOwner {
        id: String,
        owner: String,
        by: String,
    },

    /// A node registering under an id whose lease another live process holds.
    #[error("node id '{id}' is already registered by a live process ({holder}); give each appliance its own lifecycle.appliance")]
    NodeTaken { id: String, holder: String },

    /// A node process that may no longer act as the node (taken over, or declared dead).
    #[error("node '{id}' may no longer act: {why}")]
    NodeFenced { id: String, why: String },

    /// Compare-and-set on a node's state lost.
    #[error("node '{id}' is {actual}, not {expected}")]
    NodeConflict {
        id: String,
        expected: NodeState,
        actual: NodeState,
    },

    #[error("{kind} '{id}' not found")]
    NotFound { kind: &'static str, id: String },

    #[error("{kind} '{id}' already exists")]
    AlreadyExists { kind: &'static str, id: String },

    #[error("invalid request: {0}")]
    Invalid(String),

    /// Stored data that does not decode: a bug or manual tampering, never
    /// silently skipped.
    #[error("corrupt record in state store ({key}): {detail}")]
    Corrupt { key: String, detail: String },

    /// The store answered with an error that is not about reachability
    /// (disk full, script error, wrong key type).
    #[error("state store error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether the caller may retry the same call later and expect a different outcome.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    pub(crate) fn server_not_found(id: &str) -> Self {
        StoreError::NotFound {
            kind: "server",
            id: id.to_string(),
        }
    }

    pub(crate) fn session_not_found(id: &str) -> Self {
        StoreError::NotFound {
            kind: "session",
            id: id.to_string(),
        }
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    key: &str,
    json: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        detail: e.to_string(),
    })
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encoding JSON: {e}")))
}

/// Ids become parts of Redis keys and redb keys; reject the ones that would
/// make keys ambiguous or unreadable.
pub(crate) fn check_id(kind: &str, id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > 200 || id.chars().any(|c| c.is_control() || c == ':') {
        return Err(StoreError::Invalid(format!(
            "{kind} id {id:?} must be 1-200 characters without ':' or control characters"
        )));
    }
    Ok(())
}
