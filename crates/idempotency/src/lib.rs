#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod claim;
mod config;
mod dedup;
mod error;
mod fingerprint;
mod key;
mod response;
mod stats;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod timestamp;

#[cfg(feature = "tower")]
pub mod http;

pub use claim::{Claim, Idempotency, Lease};
pub use config::{Config, ConfigBuilder, StoreDown};
pub use dedup::Deduplicator;
pub use error::{ConfigError, Error, KeyError};
pub use fingerprint::Fingerprint;
pub use key::{IdempotencyKey, KeyRules};
pub use response::{StoredResponse, is_replay_safe_header};
pub use stats::Stats;
/// The injectable wall clock, shared with the other Steadfast crates (it lives in
/// `steadfast-retry`); [`Idempotency::with_clock`] and [`Deduplicator::with_clock`] take it.
pub use steadfast_retry::{ManualClock, SystemClock, WallClock};
pub use store::memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use store::redis::RedisStore;
#[cfg(feature = "sqlite")]
pub use store::sqlite::{SQLITE_BUSY_TIMEOUT, SqliteStore};
pub use store::{ClaimRequest, DedupStore, IdempotencyStore, StoreClaim};
pub use timestamp::Timestamp;
