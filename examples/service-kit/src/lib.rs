#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod console;
mod error;
pub mod http;
pub mod mask;
pub mod metrics;
pub mod problem;
pub mod queue_history;
pub mod ratelimit;
pub mod secret;
pub mod shutdown;
pub mod storage;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::Error;
