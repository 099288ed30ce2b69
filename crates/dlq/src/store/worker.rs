//! [`QueueStore`]: the worker's contract.

use std::time::Duration;

use async_trait::async_trait;

use crate::{Claimed, Enqueued, Error, Failure, Lease, MessageId, NewMessage, Snooze, State};

/// The worker's side of a durable queue: enqueue messages, claim due ones under a lease,
/// settle each claim, and wait for work. This is what producers and the
/// [`Worker`](crate::Worker) call on every message; the operator's side (inspect, replay,
/// purge, prune, stats) is [`QueueAdmin`](crate::QueueAdmin), and a store implements both.
///
/// # Contract for adapter authors
///
/// - **Object-safe** (`#[async_trait]`): callers hold `Arc<dyn QueueStore>` (or
///   [`Arc<dyn Queue>`](crate::Queue) for both sides), so the trait has no generic methods.
/// - **Time** comes from the clock of the [`QueueConfig`](crate::QueueConfig) the store was
///   built with, never from the system directly: the conformance suite moves a `ManualClock`
///   and expects due times, leases and horizons to follow it.
/// - **Retry decisions** follow the config too: [`fail`](Self::fail) and
///   [`snooze`](Self::snooze) use the queue's retry policy, `max_delay` and horizon.
/// - **Leases fence settling writes**: [`ack`](Self::ack), [`fail`](Self::fail),
///   [`snooze`](Self::snooze), [`extend`](Self::extend) and [`release`](Self::release)
///   succeed only while the lease's token is the message's current one, and return
///   [`Error::LeaseLost`] otherwise (a worker whose lease expired must not overwrite the
///   attempt of the worker that re-claimed the message).
/// - **Errors**: a store that is down, times out or fails a write returns
///   [`Error::StoreUnavailable`] with nothing written (each call is one transaction); bad
///   arguments are [`Error::InvalidInput`]; a row that cannot be decoded is
///   [`Error::Corrupt`]. Never panic on input.
/// - **Proof**: an adapter is done when it passes `steadfast_dlq::testing::conformance`
///   (feature `testing`), the suite our memory and Postgres stores run.
#[async_trait]
pub trait QueueStore: Send + Sync + std::fmt::Debug {
    /// Stores one message; a duplicate dedup key returns the existing id as
    /// [`Enqueued::Duplicate`] (a key is held until its message is pruned or deleted; on a
    /// queue that [forgets done keys](crate::QueueConfigBuilder::remember_done), only while
    /// its message is not `done`).
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
    ///
    /// A message with a [group](crate::NewMessage::group) is claimed only while no earlier
    /// message of its group (by id) is `pending`, `retrying` or `running`: a group's messages
    /// run one at a time, in order, and a busy group takes at most one of the `limit`.
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

    /// [`ack_batch`](Self::ack_batch) that says which: the ids of the leases that were still
    /// held and are now `done` (lost leases are left out). The worker batches the acks of
    /// messages that finish together through it.
    ///
    /// The default acks one lease at a time (correct, one write each); the stores of this
    /// crate override it with one write.
    async fn ack_batch_ids(&self, leases: &[Lease]) -> Result<Vec<MessageId>, Error> {
        let mut acked = Vec::with_capacity(leases.len());
        for lease in leases {
            match self.ack(lease).await {
                Ok(()) => acked.push(lease.id),
                Err(Error::LeaseLost(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(acked)
    }

    /// Records the failed attempt, then: `retrying` at now + the queue policy's
    /// `delay(attempt)` (or the failure's own delay, capped at the policy's `max_delay`), or
    /// `dead` when the attempts are exhausted, the failure is not retryable, or the message
    /// has waited longer than its queue's horizon (a final
    /// [`HORIZON_PASSED`](crate::HORIZON_PASSED) entry says so). Returns the new state.
    async fn fail(&self, lease: &Lease, failure: Failure) -> Result<State, Error>;

    /// Reschedules the message without spending the claim's attempt (see [`Snooze`]): the
    /// attempt is given back, the snooze is recorded in the history (`snoozed: true`), and the
    /// message is due at the snooze's time capped at the policy's `max_delay`. Returns the new
    /// state: `pending` (no real attempt yet) or `retrying`, or `dead` when the message has
    /// waited longer than its queue's horizon. Fenced by the lease like [`fail`](Self::fail).
    async fn snooze(&self, lease: &Lease, snooze: Snooze) -> Result<State, Error>;

    /// Extends the lease to now + `lease` (a heartbeat for long handlers).
    async fn extend(&self, lease: &Lease, lease_for: Duration) -> Result<Lease, Error>;

    /// Gives the message back without counting the attempt (graceful shutdown): it is due at
    /// once for another worker.
    async fn release(&self, lease: &Lease) -> Result<(), Error>;

    /// Waits until a message may have been enqueued on `queue`, or `timeout` passed (the
    /// polling fallback). Spurious wake-ups are allowed; callers then claim and find nothing.
    async fn wait_for_work(&self, queue: &str, timeout: Duration);
}
