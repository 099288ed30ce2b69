#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod conversation;
mod definition;
mod error;
mod instance;
mod mermaid;
mod registry;
mod types;

pub use definition::{DEFAULT_HISTORY_LIMIT, Definition, DefinitionBuilder, Edge, Transition};
pub use error::Error;
pub use instance::{HistoryRecord, Instance};
pub use registry::Registry;
pub use types::{Event, StateId};
