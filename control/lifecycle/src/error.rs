//! Why the engine could not do what it was asked, with the cause kept: the API answers a
//! store outage with 503 and `Retry-After`, a request the server's state does not allow
//! with 409, and shows every other failure as its message.

use warden_archive::ArchiveError;
use warden_runtime::RuntimeError;
use warden_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no managed server `{0}` on this appliance")]
    NotFound(String),
    /// The request is valid but the server's state (or a running operation) does not
    /// allow it now.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A failure, and what the engine was doing when it happened.
    #[error("{context}: {source}")]
    During {
        context: String,
        source: Box<LifecycleError>,
    },
    /// A failure described in words (e.g. a server that did not become ready).
    #[error("{0}")]
    Failed(String),
}

impl LifecycleError {
    /// Says what the engine was doing: "CONTEXT: cause".
    pub fn during(self, context: impl Into<String>) -> Self {
        LifecycleError::During {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The innermost error, past every [`LifecycleError::During`].
    pub fn cause(&self) -> &LifecycleError {
        match self {
            LifecycleError::During { source, .. } => source.cause(),
            other => other,
        }
    }

    /// The state store could not be reached: the same request may work later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.cause(), LifecycleError::Store(e) if e.is_unavailable())
    }

    /// The server's state does not allow the request, or moved on meanwhile.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self.cause(),
            LifecycleError::Refused(_)
                | LifecycleError::Store(StoreError::Conflict { .. })
                | LifecycleError::Store(StoreError::NotOwner { .. })
        )
    }
}

impl From<String> for LifecycleError {
    fn from(why: String) -> Self {
        LifecycleError::Failed(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_survives_context_and_the_message_reads_as_before() {
        let e = LifecycleError::from(StoreError::Unavailable("redis down".into()))
            .during("restore failed, archive kept");
        assert!(e.is_unavailable());
        assert!(!e.is_conflict());
        assert_eq!(
            e.to_string(),
            "restore failed, archive kept: state store unavailable: redis down"
        );
        assert!(LifecycleError::Refused("busy".into()).is_conflict());
        assert!(!LifecycleError::Failed("no".into()).is_unavailable());
    }
}
