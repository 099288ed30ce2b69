#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod conversation;
mod definition;
mod error;
mod instance;
mod machines;
mod mermaid;
mod registry;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

pub use definition::{DEFAULT_HISTORY_LIMIT, Definition, DefinitionBuilder, Edge, Transition};
pub use error::{DefinitionError, Error};
pub use instance::{HistoryRecord, Instance};
pub use machines::{
    Applied, DEFAULT_CONFLICT_RETRIES, DEFAULT_FAILURE_BACKOFF, DEFAULT_FAILURE_BACKOFF_MAX,
    Machines, SWEEP_FAILURES_KEY, SweepReport,
};
pub use registry::{Registry, Restored};
#[cfg(feature = "postgres")]
pub use store::PostgresSnapshots;
pub use store::{MemorySnapshots, Snapshot, SnapshotStore};
#[cfg(feature = "sqlite")]
pub use store::{SQLITE_BUSY_TIMEOUT, SqliteSnapshots};
pub use types::{Event, StateId};
