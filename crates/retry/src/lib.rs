#![doc = include_str!("../README.md")]
//!
//! # Overview
//!
//! The three parts:
//! - [`RetryPolicy`]: a backoff ([`Backoff`]: constant, linear, exponential) with [`Jitter`]
//!   (none, full, equal, decorrelated), a cap per delay, and stop conditions. It is a plain
//!   value that computes its schedule, so a queue can store `next_retry_at` without running
//!   anything ([`RetryPolicy::delay`], [`RetryPolicy::schedule`]).
//! - [`Retry`] / [`retry`]: run an async operation until it succeeds, with a classifier that
//!   says per error whether to retry, stop, or wait a server-given delay ([`Action`]), and hooks
//!   to observe every retry. The final [`RetryError`] says how many attempts were made and why
//!   the loop stopped.
//! - [`RetryBudget`]: a lock-free token bucket shared across requests, so that retries cannot
//!   amplify an outage.
//!
//! And one shared utility: [`WallClock`] ([`SystemClock`], [`ManualClock`], [`TokioClock`]),
//! the injectable wall clock that crates deciding deadlines by time of day (the queue's
//! `next_retry_at`, idempotency leases) take, so their tests drive time exactly. The circuit
//! breaker's clock is a different one, `MonotonicClock`: see [`WallClock`] for the two side by
//! side.
//!
//! ```
//! use std::time::Duration;
//! use steadfast_retry::{retry, RetryPolicy};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // Seed defaults: 3 attempts, 1 s then 2 s, capped at 30 s.
//! let policy = RetryPolicy::default();
//! assert_eq!(policy.delay(1), Duration::from_secs(1));
//! assert_eq!(policy.delay(2), Duration::from_secs(2));
//!
//! let result: Result<(), _> = retry(&policy, || async { Err::<(), _>("down") }).await;
//! let err = result.unwrap_err();
//! assert_eq!(err.attempts, 3);
//! # }
//! ```
#![forbid(unsafe_code)]

mod backoff;
mod budget;
mod clock;
mod error;
mod policy;
mod retry;
#[cfg(feature = "chrono")]
pub mod utc;

pub use backoff::{Backoff, Jitter, MAX_DURATION};
pub use budget::{RetryBudget, RetryBudgetBuilder};
pub use clock::{ManualClock, SystemClock, TokioClock, WallClock};
pub use error::ConfigError;
pub use policy::{RetryPolicy, RetryPolicyBuilder, Schedule};
pub use retry::{Action, AttemptTimeout, Retry, RetryError, RetryEvent, StopReason, retry};
