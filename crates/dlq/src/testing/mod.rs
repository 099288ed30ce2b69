//! The conformance suite every queue store must pass, for adapter authors (feature `testing`).
//!
//! [`conformance`] runs each case against a fresh store that the caller builds from the
//! [`QueueConfig`] it is handed: that config carries a [`ManualClock`](crate::ManualClock), so
//! time moves only when a case says so, and the retry policy [`policy`]. A violation panics with
//! the case's name on stderr (`conformance case: ...`) and an assertion message, which is what a
//! test wants. Our own memory and Postgres stores run this same suite (`tests/conformance.rs`).
//!
//! The cases are organised by the two contracts a store implements: `worker.rs` holds the
//! cases of [`QueueStore`](crate::QueueStore) (enqueue and dedup, claim order, backoff, leases
//! and fencing, snooze, horizons, groups, remembered keys), `admin.rs` those of
//! [`QueueAdmin`](crate::QueueAdmin) (list, replay, run now, delete, purge, prune, stats). A
//! case checks its results through either side, so the store under test implements both
//! ([`Queue`]).
//!
//! ```rust,no_run
//! use std::sync::Arc;
//! use steadfast_dlq::{MemoryQueue, Queue};
//!
//! # async fn demo() {
//! steadfast_dlq::testing::conformance(|config| async move {
//!     let store: Arc<dyn Queue> = Arc::new(MemoryQueue::with_config(config));
//!     Some((store, ()))
//! })
//! .await;
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{Failure, NewMessage, Queue, QueueConfig};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use steadfast_retry::{Jitter, RetryPolicy};

/// Runs one case on a fresh store built by `$make` from a config with a manual clock (and
/// `$tweak` applied to its builder); returns `false` from the enclosing function when `$make`
/// declines, so the rest of the suite is skipped.
macro_rules! case {
    ($make:expr, $name:ident) => {
        case!($make, $name, |b| b)
    };
    ($make:expr, $name:ident, $tweak:expr) => {{
        let clock = crate::ManualClock::new(crate::testing::start());
        let tweak: fn(crate::QueueConfigBuilder) -> crate::QueueConfigBuilder = $tweak;
        let config = tweak(
            crate::QueueConfig::builder()
                .default_policy(crate::testing::policy())
                .clock(std::sync::Arc::new(clock.clone())),
        )
        .build()
        .unwrap();
        let Some((store, guard)) = ($make)(config).await else {
            return false;
        };
        eprintln!("conformance case: {}", stringify!($name));
        $name(&*store, &clock).await;
        drop(store);
        drop(guard);
    }};
}

mod admin;
mod worker;

const LEASE: Duration = Duration::from_secs(30);
const SEC: Duration = Duration::from_secs(1);

fn start() -> DateTime<Utc> {
    // Whole seconds: Postgres keeps microseconds, so a nanosecond clock would not round-trip.
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

/// The default retry policy of every case's config: 3 attempts; waits of 1 s then 2 s
/// (doubling, capped at 60 s), no jitter.
pub fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .exponential(SEC, 2.0)
        .max_delay(Duration::from_secs(60))
        .max_attempts(3)
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

/// Runs every case of the suite, each on a fresh store, and panics at the first violation:
/// first the cases of the worker's contract ([`QueueStore`](crate::QueueStore)), then those of
/// the operator's ([`QueueAdmin`](crate::QueueAdmin)).
///
/// `make` builds an empty store from the config it is given (its clock, its retry policies,
/// its horizons and remembered-done-key settings: the store must honour them all) and returns
/// it with a guard, anything that must live as long as the store (a test schema, a temporary
/// directory; `()` if nothing). The guard is dropped after the store, at the end of the case.
/// Return `None` to skip the rest of the suite, e.g. when the database is not reachable.
pub async fn conformance<F, Fut, G>(make: F)
where
    F: Fn(QueueConfig) -> Fut,
    Fut: Future<Output = Option<(Arc<dyn Queue>, G)>>,
{
    if worker::run(&make).await {
        admin::run(&make).await;
    }
}

fn msg(queue: &str, n: u32) -> NewMessage {
    NewMessage::new(queue, json!({ "n": n }))
}

/// A dead letter on `queue` (one attempt, failed), with `key` as its dedup key.
async fn kill(s: &dyn Queue, queue: &str, kind: &str, key: Option<&str>) -> crate::MessageId {
    let mut m = msg(queue, 0).max_attempts(1);
    if let Some(k) = key {
        m = m.dedup_key(k);
    }
    let id = s.enqueue(m).await.unwrap().id();
    let c = s.claim(queue, 1, LEASE).await.unwrap().remove(0);
    assert_eq!(c.message.id, id);
    s.fail(&c.lease, Failure::retryable(kind, "boom"))
        .await
        .unwrap();
    id
}
