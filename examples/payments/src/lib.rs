#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod assemble;
pub mod callback;
pub mod checks;
pub mod config;
pub mod console;
pub mod fake_provider;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod money;
pub mod payout;
pub mod problem;
pub mod signature;
