#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod config;
mod context;
mod definition;
mod error;
mod events;
mod id;
mod log;
mod ops;
mod record;
mod recovery;
mod runner;
mod step;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod time;

pub use config::{RunnerConfig, RunnerConfigBuilder, default_compensation_policy};
pub use context::StepContext;
pub use definition::{MAX_NAME_LEN, Saga, SagaBuilder};
pub use error::{ConfigError, Error};
pub use events::SagaEvent;
pub use id::{MAX_ID_LEN, SagaId};
pub use log::{SagaLog, StepErrorView, StepStatus, StepView};
pub use ops::Operator;
pub use record::{
    Created, Entry, Lease, ListFilter, LogEntry, MAX_LIST, NewSaga, SagaSummary, State,
};
pub use recovery::{Recovery, RecoveryHandle, RecoveryReport};
pub use runner::{RunOutcome, SagaRunner, Start};
pub use steadfast_retry::{ManualClock, RetryPolicy, SystemClock, TokioClock};
pub use step::{Step, StepBuilder, StepError};
pub use store::SagaStore;
pub use store::memory::MemorySagaStore;
#[cfg(feature = "postgres")]
pub use store::postgres::PostgresSagaStore;
#[cfg(feature = "sqlite")]
pub use store::sqlite::{SQLITE_BUSY_TIMEOUT, SqliteSagaStore};
pub use time::WallClock;
