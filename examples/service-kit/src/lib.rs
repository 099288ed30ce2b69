#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
pub mod http;
pub mod mask;
pub mod metrics;
pub mod problem;
pub mod ratelimit;
pub mod secret;
pub mod storage;
pub mod telemetry;

pub use error::Error;
