//! The [`QueueStore`] trait and its adapters.

use std::time::Duration;

use async_trait::async_trait;

use crate::{
    Claimed, Enqueued, Error, Filter, Lease, Message, MessageId, NewMessage, Page, Pruned,
    QueueStats, Retention,
};

pub(crate) mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;

/// A durable queue of messages with retry state and dead letters.
///
/// Object-safe: share one as `Arc<dyn QueueStore>`. Every adapter passes the same conformance
/// suite (`tests/conformance.rs`).
///
/// Leases fence settling writes: [`ack`](Self::ack), [`fail`](Self::fail),
/// [`extend`](Self::extend) and [`release`](Self::release) succeed only while the lease's token
/// is the message's current one, and return [`Error::LeaseLost`] otherwise.
#[async_trait]
pub trait QueueStore: Send + Sync + std::fmt::Debug {
    /// Stores one message; a duplicate dedup key returns the existing id as
    /// [`Enqueued::Duplicate`].
    async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, Error> {
        let mut out = self.enqueue_batch(vec![message]).await?;
        out.pop()
            .ok_or_else(|| Error::Corrupt("batch enqueue returned no result".to_owned()))
    }

    /// Stores many messages in ONE durable write (all or none): one result per message, in
    /// order. A key repeated within the batch is stored once; later copies are duplicates of
    /// the first.
    async fn enqueue_batch(&self, messages: Vec<NewMessage>) -> Result<Vec<Enqueued>, Error>;

    /// Claims up to `limit` due messages of `queue`, most urgent first (priority, then
    /// `run_at`): `pending`/`retrying` messages due now and `running` ones whose lease expired.
    /// Each claim starts an attempt and holds a lease for `lease`. A rescued message that had
    /// already used its last attempt becomes dead instead (a message that keeps crashing its
    /// workers must not run forever).
    async fn claim(
        &self,
        queue: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, Error>;

    /// Marks the message `done`.
    async fn ack(&self, lease: &Lease) -> Result<(), Error>;

    /// Acks many leases in one write (one commit for a batch): returns how many were still
    /// held and are now `done`; lost leases are skipped.
    async fn ack_batch(&self, leases: &[Lease]) -> Result<u64, Error>;

    /// Records the failed attempt, then: `retrying` at now + the queue policy's
    /// `delay(attempt)` (or the failure's own delay), or `dead` when the attempts are
    /// exhausted or the failure is not retryable. Returns the new state.
    async fn fail(&self, lease: &Lease, failure: crate::Failure) -> Result<crate::State, Error>;

    /// Extends the lease to now + `lease` (a heartbeat for long handlers).
    async fn extend(&self, lease: &Lease, lease_for: Duration) -> Result<Lease, Error>;

    /// Gives the message back without counting the attempt (graceful shutdown): it is due at
    /// once for another worker.
    async fn release(&self, lease: &Lease) -> Result<(), Error>;

    /// One message with its error history.
    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error>;

    /// Messages selected by `filter` (dead letters by default), oldest id first.
    async fn list(&self, filter: &Filter, page: Page) -> Result<Vec<Message>, Error>;

    /// Moves one dead letter back to `pending`, due now, attempts reset (error history kept).
    async fn replay(&self, id: MessageId) -> Result<(), Error>;

    /// Replays every message selected by `filter` (which must select dead letters); returns
    /// how many. Dedup keys stay unique: a dead letter still holds its key, so no live copy
    /// can exist beside it.
    async fn replay_matching(&self, filter: &Filter) -> Result<u64, Error>;

    /// Deletes one message; `false` when there was none.
    async fn delete(&self, id: MessageId) -> Result<bool, Error>;

    /// Deletes every message selected by `filter`; returns how many.
    async fn purge(&self, filter: &Filter) -> Result<u64, Error>;

    /// Deletes `done` and old `dead` messages per `retention`.
    async fn prune(&self, retention: &Retention) -> Result<Pruned, Error>;

    /// Stats of every queue that holds messages, by queue name.
    async fn stats(&self) -> Result<Vec<QueueStats>, Error>;

    /// Waits until a message may have been enqueued on `queue`, or `timeout` passed (the
    /// polling fallback). Spurious wake-ups are allowed; callers then claim and find nothing.
    async fn wait_for_work(&self, queue: &str, timeout: Duration);
}

/// Checks a claim's arguments (shared by adapters).
pub(crate) fn check_claim(queue: &str, lease: Duration) -> Result<(), Error> {
    crate::message::check_name("queue name", queue)?;
    if lease.is_zero() || chrono::Duration::from_std(lease).is_err() {
        return Err(Error::InvalidInput(format!(
            "lease must be positive and finite, got {lease:?}"
        )));
    }
    Ok(())
}

/// The state and due time after a failure (shared by adapters).
pub(crate) fn after_failure(
    config: &crate::QueueConfig,
    lease: &Lease,
    failure: &crate::Failure,
    now: chrono::DateTime<chrono::Utc>,
) -> (crate::State, chrono::DateTime<chrono::Utc>) {
    if !failure.retryable || lease.attempt >= lease.max_attempts {
        return (crate::State::Dead, now);
    }
    let delay = failure
        .retry_after
        .unwrap_or_else(|| config.policy(&lease.queue).delay(lease.attempt));
    (crate::State::Retrying, crate::time::add(now, delay))
}

/// What a rescued message's error history says when its lease expired before the attempt
/// was settled (the memory store records it directly, Postgres inside its claim statement).
pub(crate) const LEASE_EXPIRED_MESSAGE: &str = "lease expired before the attempt was settled";

/// The error recorded for attempt `attempt` when its lease expired unsettled (shared by
/// adapters; Postgres builds the same value in SQL from [`LEASE_EXPIRED_MESSAGE`]).
pub(crate) fn lease_expired(
    attempt: u32,
    at: chrono::DateTime<chrono::Utc>,
) -> crate::AttemptError {
    crate::AttemptError {
        attempt,
        at,
        message: LEASE_EXPIRED_MESSAGE.to_owned(),
        kind: crate::LEASE_EXPIRED.to_owned(),
    }
}

/// Checks a filter used for replay (shared by adapters).
pub(crate) fn check_replay_filter(filter: &Filter) -> Result<(), Error> {
    if filter.target_state() != crate::State::Dead {
        return Err(Error::InvalidInput(
            "only dead letters can be replayed".to_owned(),
        ));
    }
    Ok(())
}
