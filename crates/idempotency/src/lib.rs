#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod claim;
mod clock;
mod config;
mod dedup;
mod error;
mod fingerprint;
mod key;
mod response;
mod stats;
pub mod store;

#[cfg(feature = "tower")]
pub mod http;

pub use claim::{Claim, Idempotency, Lease};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use config::{Config, ConfigBuilder, StoreDown};
pub use dedup::Deduplicator;
pub use error::{ConfigError, Error, KeyError};
pub use fingerprint::Fingerprint;
pub use key::{IdempotencyKey, KeyRules};
pub use response::{StoredResponse, is_replay_safe_header};
pub use stats::Stats;
pub use store::memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use store::redis::RedisStore;
pub use store::{ClaimRequest, DedupStore, IdempotencyStore, StoreClaim};
