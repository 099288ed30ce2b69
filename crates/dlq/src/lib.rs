#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod config;
mod error;
mod message;
mod ops;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
mod worker;

pub use config::{QueueConfig, QueueConfigBuilder};
pub use error::Error;
pub use message::{
    AttemptError, Claimed, Enqueued, Failure, HORIZON_PASSED, LEASE_EXPIRED, Lease, MAX_KEY_LEN,
    MAX_PRIORITY, MAX_TRACE_CONTEXT_LEN, Message, MessageId, NewMessage, Snooze, State,
};
pub use ops::{AlertLevel, AlertThresholds, Filter, MAX_PAGE, Page, Pruned, QueueStats, Retention};
pub use steadfast_retry::{ManualClock, SystemClock, TokioClock, WallClock};
#[cfg(feature = "sqlite")]
pub use store::instance_lock::SqliteInstanceLock;
pub use store::memory::MemoryQueue;
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresQueue;
#[cfg(feature = "sqlite")]
pub use store::sqlite::{SQLITE_BUSY_TIMEOUT, SqliteQueue};
pub use store::{Queue, QueueAdmin, QueueStore};
pub use worker::{
    DEFAULT_WORKER_STORE_TIMEOUT, Outcome, SpanHook, Worker, WorkerBuilder, WorkerHooks,
    WorkerReport,
};
