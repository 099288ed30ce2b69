#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod breaker;
mod call;
mod clock;
mod config;
mod error;
mod event;
mod half_open;
mod metrics;
mod permit;
mod registry;
mod state;
#[cfg(feature = "tower")]
pub mod tower;
mod window;

pub use breaker::CircuitBreaker;
pub use call::{Classifier, DefaultClassifier, Outcome};
pub use clock::{InstantClock, ManualMonotonicClock, MonotonicClock};
pub use config::{
    Config, ConfigBuilder, MAX_COUNT_WINDOW, MAX_HALF_OPEN_PERMITS, MAX_TIME_WINDOW_SECS,
    OpenDuration, SlidingWindow,
};
pub use error::{CallError, ConfigError, Rejected};
pub use event::{Event, EventReceiver, RecvError, Transition, TryRecvError};
pub use metrics::Metrics;
pub use permit::{OwnedPermit, Permit};
pub use registry::{Preset, Registry, RegistrySnapshot};
pub use state::State;
