#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod actions;
pub mod admin;
pub mod app;
pub mod assemble;
pub mod checks;
pub mod config;
pub mod console;
pub mod echo;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod payload;
pub mod retention;
pub mod routing;
pub mod signature;
pub mod worker;
pub use steadfast_service_kit::{mask, problem, ratelimit, telemetry};
