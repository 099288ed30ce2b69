//! The store traits: [`IdempotencyStore`] for claims, [`DedupStore`] for message
//! de-duplication. Both are small and object-safe (`Arc<dyn IdempotencyStore>`), and take the
//! current time as an argument so that expiry is decided by the caller's clock, the same way
//! in every store.
//!
//! An adapter is correct when it passes the conformance suite in `tests/conformance.rs`.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Error;
use crate::fingerprint::Fingerprint;
use crate::key::IdempotencyKey;
use crate::response::StoredResponse;
use crate::timestamp::Timestamp;

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// A claim request, as a store sees it.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// Key scope (e.g. tenant or user id); keys in different scopes never meet. May be empty.
    pub scope: &'a str,
    /// The key.
    pub key: &'a IdempotencyKey,
    /// The request's fingerprint.
    pub fingerprint: Fingerprint,
    /// The current time.
    pub now: Timestamp,
    /// How long a granted lease lasts.
    pub lease: Duration,
}

/// A store's answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreClaim {
    /// The caller holds the key until `now + lease`, with this fencing token. Fencing tokens
    /// are unique per store and increase with each grant.
    Execute {
        /// The fencing token to present on complete / release.
        fence: u64,
    },
    /// Completed before with the same fingerprint.
    Replay(StoredResponse),
    /// Another holder's lease is live.
    InFlight {
        /// Time until that lease expires.
        retry_after: Duration,
    },
    /// The key is live with a different fingerprint.
    Mismatch,
}

/// Storage for idempotency claims.
///
/// Semantics every adapter implements (atomically, shared across instances):
/// - `claim`: no live record → grant a new lease (new fence). A completed record whose TTL
///   passed, or an in-flight record whose lease expired, counts as absent. A live record
///   with another fingerprint → `Mismatch`; completed → `Replay`; in flight → `InFlight`.
/// - `complete`: only if the record is in flight with this fence and its lease has not
///   expired at `now`; stores the response and keeps it for `ttl`. Otherwise [`Error::StaleLease`], and nothing is overwritten.
/// - `release`: only if in flight with this fence; deletes the record. Otherwise
///   [`Error::StaleLease`].
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claim a key.
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<StoreClaim, Error>;

    /// Store the response of the lease holding `fence`.
    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fence: u64,
        response: &StoredResponse,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<(), Error>;

    /// Free the key held by `fence`.
    async fn release(&self, scope: &str, key: &IdempotencyKey, fence: u64) -> Result<(), Error>;
}

/// Storage for message de-duplication: ids remembered for a window.
#[async_trait]
pub trait DedupStore: Send + Sync + 'static {
    /// Remember `id` until `now + window` if it is not remembered yet; `true` if it was not.
    /// Atomic: of concurrent callers with one id, exactly one gets `true`.
    async fn insert_if_absent(
        &self,
        id: &str,
        window: Duration,
        now: Timestamp,
    ) -> Result<bool, Error>;

    /// Whether `id` is remembered (read only).
    async fn contains(&self, id: &str, now: Timestamp) -> Result<bool, Error>;

    /// Remember `id` until `now + window` whether or not it was, recording the processing
    /// time when given.
    async fn mark(
        &self,
        id: &str,
        window: Duration,
        now: Timestamp,
        processing_time: Option<Duration>,
    ) -> Result<(), Error>;
}

/// The answer to a claim that finds a record under its key, decided in one place for the
/// stores that decide in Rust (memory, Postgres; Redis decides the same in its claim script,
/// to stay one atomic round trip).
///
/// `None` when the record has expired at `req.now`: the key is free and the store grants a
/// new lease. Otherwise `Mismatch` for another fingerprint, else `Replay` when `completed`
/// yields the stored response, `InFlight` with the time left on the lease when it yields
/// `None`. `completed` runs only when the fingerprint matches, so a store decodes a stored
/// response only to replay it.
pub(crate) fn answer_found(
    req: &ClaimRequest<'_>,
    fingerprint: &[u8],
    expires_at: Timestamp,
    completed: impl FnOnce() -> Result<Option<StoredResponse>, Error>,
) -> Result<Option<StoreClaim>, Error> {
    if expires_at <= req.now {
        return Ok(None);
    }
    if fingerprint != req.fingerprint.as_bytes().as_slice() {
        return Ok(Some(StoreClaim::Mismatch));
    }
    Ok(Some(match completed()? {
        Some(response) => StoreClaim::Replay(response),
        None => StoreClaim::InFlight {
            retry_after: req.now.until(expires_at),
        },
    }))
}

/// The outcome of a fenced write (complete, release): `applied` is whether the store found
/// the record in flight under `fence` and changed it.
pub(crate) fn fenced(applied: bool, fence: u64) -> Result<(), Error> {
    if applied {
        Ok(())
    } else {
        Err(Error::StaleLease { fence })
    }
}
