//! The crate's one error type, and the typed configuration errors it wraps.

use std::time::Duration;

use crate::{SagaId, State};

/// What went wrong, named for what the caller should do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input was rejected (a saga id, a saga input that does not serialise): fix the input;
    /// the same call fails again.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A builder was given settings that cannot work: fix the configuration.
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] ConfigError),
    /// No saga has this id.
    #[error("saga {0} not found")]
    NotFound(SagaId),
    /// This runner's lease on the saga is gone: it expired and another runner claimed the saga
    /// (or the saga is finished). Nothing was written. Stop working on the saga: its new owner
    /// carries on from the log.
    #[error("lease on saga {0} is lost (expired and re-claimed, or the saga is finished)")]
    LeaseLost(SagaId),
    /// The operation does not apply to the saga's state (e.g. resolving one that is not
    /// `failed`). HTTP: 409.
    #[error("saga {id} is {actual}, expected {expected}")]
    WrongState {
        /// The saga.
        id: SagaId,
        /// Its state.
        actual: State,
        /// The state the operation needs.
        expected: State,
    },
    /// The id is already used by a saga of another definition (name or version): pick the id
    /// from a namespace of this saga's own (see [`SagaId::derive`]).
    #[error("saga id {id} is taken by saga {name} v{version}")]
    IdTaken {
        /// The id.
        id: SagaId,
        /// The definition that holds it.
        name: String,
        /// Its version.
        version: u32,
    },
    /// The saga store failed or is unreachable: nothing was written. Retry later; a saga that
    /// was running is resumed by the recovery loop once its lease expires.
    #[error("saga store unavailable: {0}")]
    StoreUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored record could not be decoded (written by another version?).
    #[error("stored saga data is corrupt: {0}")]
    Corrupt(String),
}

impl Error {
    /// Whether the same call may succeed later (the store was unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::StoreUnavailable(_))
    }
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                Error::Corrupt(e.to_string())
            }
            other => Error::StoreUnavailable(Box::new(other)),
        }
    }
}

/// A definition or runner setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A saga needs at least one step.
    #[error("saga {0} has no steps")]
    NoSteps(String),
    /// Two steps share a name (the name is part of the idempotency key and of the log).
    #[error("saga {saga} has two steps named {step}")]
    DuplicateStep {
        /// The saga.
        saga: String,
        /// The repeated step name.
        step: String,
    },
    /// A saga or step name is empty, too long, or has a character outside
    /// `[A-Za-z0-9_.-]`.
    #[error("invalid {what} name {name:?}: 1 to 64 characters of [A-Za-z0-9_.-]")]
    InvalidName {
        /// `"saga"` or `"step"`.
        what: &'static str,
        /// The refused name.
        name: String,
    },
    /// A duration that must be positive is zero.
    #[error("{0} must be positive")]
    ZeroDuration(&'static str),
    /// The heartbeat must come well within the lease, or the lease lapses between beats.
    #[error("heartbeat {heartbeat:?} must be shorter than the lease {lease:?}")]
    HeartbeatNotBelowLease {
        /// The heartbeat interval.
        heartbeat: Duration,
        /// The lease.
        lease: Duration,
    },
    /// A count that must be at least one is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The owner name is empty or longer than 200 bytes.
    #[error("runner owner must be 1 to 200 bytes")]
    InvalidOwner,
}
