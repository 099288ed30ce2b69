//! The [`QueueStore`] trait and its adapters.

use std::time::Duration;

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use crate::time::add;
use crate::{
    AttemptError, Claimed, Enqueued, Error, Failure, Filter, HORIZON_PASSED, Lease, Message,
    MessageId, NewMessage, Page, Pruned, QueueConfig, QueueStats, Retention, Snooze, State,
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
    /// has waited longer than its queue's horizon (a final [`HORIZON_PASSED`] entry says so).
    /// Returns the new state.
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

    /// One message with its error history.
    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error>;

    /// Messages selected by `filter` (dead letters by default), oldest id first.
    async fn list(&self, filter: &Filter, page: Page) -> Result<Vec<Message>, Error>;

    /// Moves one `dead` or `retrying` message back to `pending`, due now, attempts reset and
    /// its horizon restarted (error history kept). Any other state is
    /// [`Error::WrongState`] (expected `dead`).
    async fn replay(&self, id: MessageId) -> Result<(), Error>;

    /// Replays every message selected by `filter` (which must select dead letters or
    /// `retrying` messages); returns how many. Dedup keys stay unique: a dead letter still
    /// holds its key, so no live copy can exist beside it.
    async fn replay_matching(&self, filter: &Filter) -> Result<u64, Error>;

    /// Makes one `retrying` or `pending` message due now, keeping its attempts and history
    /// (an operator's "run now" after an outage). Any other state is [`Error::WrongState`]
    /// (expected `retrying`).
    async fn run_now(&self, id: MessageId) -> Result<(), Error>;

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

/// What a `fail` or `snooze` writes to the leased message (shared by adapters, so both
/// decide alike; the lease carries everything needed, so no read comes first).
#[derive(Debug)]
pub(crate) struct Settlement {
    pub(crate) state: State,
    pub(crate) run_at: DateTime<Utc>,
    pub(crate) waiting_since: Option<DateTime<Utc>>,
    /// Appended to the history, in order.
    pub(crate) entries: Vec<AttemptError>,
    /// Whether the claim's attempt is given back (a snooze spends none).
    pub(crate) give_back: bool,
}

/// The settlement of a failed attempt.
pub(crate) fn after_failure(
    config: &QueueConfig,
    lease: &Lease,
    failure: &Failure,
    now: DateTime<Utc>,
) -> Settlement {
    let entry = AttemptError {
        attempt: lease.attempt,
        at: now,
        message: failure.message.clone(),
        kind: failure.kind.clone(),
        snoozed: false,
    };
    if !failure.retryable || lease.attempt >= lease.max_attempts {
        return Settlement {
            state: State::Dead,
            run_at: now,
            waiting_since: lease.waiting_since,
            entries: vec![entry],
            give_back: false,
        };
    }
    let delay = match failure.retry_after {
        Some(asked) => asked.min(config.max_delay(&lease.queue)),
        None => config.policy(&lease.queue).delay(lease.attempt),
    };
    waiting(config, lease, now, delay, entry, State::Retrying, false)
}

/// The settlement of a snooze: the attempt is given back.
pub(crate) fn after_snooze(
    config: &QueueConfig,
    lease: &Lease,
    snooze: &Snooze,
    now: DateTime<Utc>,
) -> Settlement {
    let entry = AttemptError {
        attempt: lease.attempt,
        at: now,
        message: snooze.message.clone(),
        kind: snooze.kind.clone(),
        snoozed: true,
    };
    let delay = snooze.delay_from(now).min(config.max_delay(&lease.queue));
    // Attempts after the give-back: none means it never really ran.
    let state = if lease.attempt <= 1 {
        State::Pending
    } else {
        State::Retrying
    };
    waiting(config, lease, now, delay, entry, state, true)
}

/// Waits `delay` more, unless the message has waited longer than its queue's horizon.
fn waiting(
    config: &QueueConfig,
    lease: &Lease,
    now: DateTime<Utc>,
    delay: std::time::Duration,
    entry: AttemptError,
    state: State,
    give_back: bool,
) -> Settlement {
    let since = lease.waiting_since.unwrap_or(now);
    if let Some(horizon) = config.horizon(&lease.queue) {
        if now > add(since, horizon) {
            let last = AttemptError {
                attempt: entry.attempt,
                at: now,
                message: format!(
                    "waited longer than the queue's horizon of {horizon:?} (since {})",
                    since.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                ),
                kind: HORIZON_PASSED.to_owned(),
                snoozed: false,
            };
            return Settlement {
                state: State::Dead,
                run_at: now,
                waiting_since: Some(since),
                entries: vec![entry, last],
                give_back,
            };
        }
    }
    Settlement {
        state,
        run_at: add(now, delay),
        waiting_since: Some(since),
        entries: vec![entry],
        give_back,
    }
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
        snoozed: false,
    }
}

/// Checks a filter used for replay (shared by adapters).
pub(crate) fn check_replay_filter(filter: &Filter) -> Result<(), Error> {
    if !REPLAYABLE.contains(&filter.target_state()) {
        return Err(Error::InvalidInput(
            "only dead letters and retrying messages can be replayed".to_owned(),
        ));
    }
    Ok(())
}

/// The states `replay` accepts.
pub(crate) const REPLAYABLE: [State; 2] = [State::Dead, State::Retrying];

/// The states `run_now` accepts.
pub(crate) const RUNNABLE: [State; 2] = [State::Retrying, State::Pending];
