//! The two contracts a queue store implements, and the adapters of this crate.
//!
//! - [`QueueStore`] (`worker.rs`): what producers and the [`Worker`](crate::Worker) need to
//!   move messages: enqueue, claim under a lease, settle (ack, fail, snooze, release, extend),
//!   and wait for work.
//! - [`QueueAdmin`] (`admin.rs`): what an operator and retention need: inspect, list, replay,
//!   run now, delete, purge, prune, stats.
//! - [`Queue`]: both behind one pointer. Every type that implements the two implements it
//!   (a blanket impl), so a service holds one `Arc<dyn Queue>` and hands it to its worker, its
//!   admin API and its retention task.
//!
//! The adapters of this crate, [`MemoryQueue`](crate::MemoryQueue), `PostgresQueue` and
//! `SqliteQueue`, implement both contracts, and pass the one conformance suite (`testing::conformance`, feature
//! `testing`), organised by the same two contracts.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::time::add;
use crate::{
    AttemptError, Error, Failure, Filter, HORIZON_PASSED, Lease, QueueConfig, Snooze, State,
};

mod admin;
#[cfg(feature = "sqlite")]
pub(crate) mod instance_lock;
pub(crate) mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
mod worker;

pub use admin::QueueAdmin;
pub use worker::QueueStore;

/// A whole queue store: the worker's contract and the operator's, behind one pointer.
///
/// Implemented for every type that implements [`QueueStore`] and [`QueueAdmin`]; never
/// implement it by hand. Object-safe: share one store as `Arc<dyn Queue>` where a caller needs
/// both sides (a service wiring its worker, admin API and retention; the
/// [`Worker`](crate::Worker), which also publishes [`stats`](QueueAdmin::stats)). Every
/// method of both traits is callable on a `dyn Queue`.
pub trait Queue: QueueStore + QueueAdmin {}

impl<T: QueueStore + QueueAdmin + ?Sized> Queue for T {}

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
