#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod baseline;
pub mod duration;
mod error;
mod fakes;
mod load;
mod otlp_sink;
mod payload;
mod report;
mod run;
mod signature;
mod webhook_config;

pub use baseline::{baseline_router, serve_baseline};
pub use error::Error;
pub use fakes::{Deliveries, FakeState, FakeStats, Fakes, FakesConfig};
pub use load::{LoadConfig, LoadConfigBuilder, LoadOutcome, run_load};
pub use otlp_sink::{SinkStats, otlp_sink_router, serve_otlp_sink};
pub use payload::{GeneratorConfig, Mix, Payload, PayloadGenerator, PayloadKind, to_meta_json};
pub use report::{
    DeliveryReport, Latency, MAX_LISTED_IDS, Report, SendReport, StatusCounts, delivery_lag_secs,
    percentile,
};
pub use run::{FakesMode, RunConfig, run};
pub use signature::{SIGNATURE_HEADER, sign};
pub use webhook_config::{ConfigExtras, webhook_config, webhook_config_toml};
