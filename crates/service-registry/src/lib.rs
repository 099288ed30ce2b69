#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod balance;
mod config;
mod endpoint;
mod error;
mod events;
pub mod health;
mod lease;
mod member;
mod registry;
mod report;
mod service;
#[cfg(feature = "testing")]
pub mod testing;

pub use balance::Balance;
pub use config::{ServiceConfig, ServiceConfigBuilder};
pub use endpoint::Endpoint;
pub use error::{CallError, Error};
pub use events::RegistryEvent;
#[cfg(feature = "http")]
pub use health::HttpChecker;
pub use health::{
    CheckError, FnChecker, HealthCheck, HealthCheckBuilder, HealthChecker, HealthState, TcpChecker,
};
pub use lease::Lease;
pub use registry::{EndpointBreaker, Registry};
pub use report::{EndpointReport, HealthReport, ServiceReport, ServiceStatus};

/// The circuit breaker crate, re-exported so that callers configure presets
/// (`BreakerConfig::standard()`, `BreakerConfig::ai_agent()`) without a second dependency.
pub use steadfast_circuit_breaker as circuit_breaker;
/// The retry crate, re-exported for [`ServiceConfigBuilder::retry`].
pub use steadfast_retry as retry;
