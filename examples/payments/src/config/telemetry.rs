//! `[telemetry]`: where traces go and how many are kept. The section and its standard
//! environment variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_TRACES_SAMPLER_ARG`, `OTEL_SERVICE_NAME`) are shared with the webhook and
//! live in `steadfast_service_kit::telemetry`; this file maps them into the payments service's config.

use std::collections::HashMap;

pub use steadfast_service_kit::telemetry::{RawTelemetry, TelemetrySettings};

use super::ConfigError;

/// The `service.name` of the payments service's spans (env `OTEL_SERVICE_NAME` overrides it).
pub const SERVICE_NAME: &str = "steadfast-payments";

/// The validated section, after the environment.
pub(super) fn settings(
    raw: RawTelemetry,
    env: &HashMap<String, String>,
) -> Result<TelemetrySettings, ConfigError> {
    TelemetrySettings::resolve(raw, env, SERVICE_NAME).map_err(|e| match e {
        steadfast_service_kit::Error::InvalidSetting { key, message } => {
            ConfigError::invalid(key, message)
        }
        other => ConfigError::invalid("telemetry", other.to_string()),
    })
}
