//! One place where redb's errors become `StoreError`s, instead of a `map_err` on every
//! table call: the steps inside the store fail with a [`Failure`] (redb's error types
//! convert with `?`), and it gets the file's path once, where a step's result leaves
//! the blocking pool.

use std::path::Path;

use crate::error::StoreError;

/// What a step of the embedded store fails with.
#[derive(Debug)]
pub(super) enum Failure {
    /// From redb: needs the file's path to become a `StoreError` ([`Failure::at`]).
    /// Boxed: redb's error is large, and `Result`s of it are returned everywhere.
    Db(Box<redb::Error>),
    /// Already a `StoreError` (corrupt record, conflict, not found, ...).
    Store(StoreError),
}

impl Failure {
    /// The `StoreError` for a store kept at `path`.
    pub(super) fn at(self, path: &Path) -> StoreError {
        match self {
            Failure::Store(e) => e,
            Failure::Db(e) => match *e {
                redb::Error::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                    "{} is already open (another warden process or store instance uses this data directory)",
                    path.display()
                )),
                e => StoreError::Backend(format!("{}: {e}", path.display())),
            },
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// Every redb error type the store meets goes through `redb::Error`, as before.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Failure::Db(Box::new(e.into()))
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
