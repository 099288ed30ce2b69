//! The crate's one error type.

use crate::MessageId;

/// What went wrong, named for what the caller should do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input was rejected (queue name, priority, dedup key, id syntax...): fix the input;
    /// retrying the same call fails again. An HTTP handler maps this to 400.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A builder was given settings that cannot work: fix the configuration.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// No message has this id (it may have been pruned or purged). HTTP: 404.
    #[error("message {0} not found")]
    NotFound(MessageId),
    /// The lease is no longer held: it expired and another worker re-claimed the message, or
    /// the message was already settled. Drop the work; do not retry the write.
    #[error("lease on message {0} is lost (expired and re-claimed, or already settled)")]
    LeaseLost(MessageId),
    /// The operation does not apply to the message's state (e.g. replaying one that is not
    /// dead). HTTP: 409.
    #[error("message {id} is {actual}, expected {expected}")]
    WrongState {
        /// The message.
        id: MessageId,
        /// Its state.
        actual: crate::State,
        /// The state the operation needs.
        expected: crate::State,
    },
    /// The backing store is down, timed out or failed the query: nothing was written (the
    /// write is one transaction). Retry later; an HTTP handler maps this to 503 so the sender
    /// retries.
    #[error("queue store unavailable: {0}")]
    StoreUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored row could not be decoded (a schema from another version?).
    #[error("stored data is corrupt: {0}")]
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
