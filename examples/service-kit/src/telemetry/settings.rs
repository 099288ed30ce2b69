//! The `[telemetry]` section both services read, and the standard OpenTelemetry environment
//! variables that override it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::Error as TelemetryError;

/// Standard: the OTLP base endpoint (`/v1/traces` is appended for traces).
pub const ENV_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Standard: the OTLP traces endpoint, used as given (wins over [`ENV_OTLP_ENDPOINT`]).
pub const ENV_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// Standard: the sampler's argument, here the ratio of new traces kept (0.0 to 1.0).
pub const ENV_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// Standard: the service name reported with every span (default: the binary's name).
pub const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// The sample ratio when none is configured: every trace (what a demo or a first look at a
/// collector wants; production deployments set 0.1 or lower, see the READMEs).
pub const DEFAULT_SAMPLE_RATIO: f64 = 1.0;

/// The environment variables read, with the key each overrides (for `check-config` listings).
pub const ENV_KEYS: &[(&str, &str)] = &[
    (ENV_OTLP_ENDPOINT, "telemetry.otlp_endpoint"),
    (
        ENV_OTLP_TRACES_ENDPOINT,
        "telemetry.otlp_endpoint (used as the full traces URL)",
    ),
    (ENV_SAMPLER_ARG, "telemetry.sample_ratio"),
    (ENV_SERVICE_NAME, "the service.name of exported spans"),
];

/// The `[telemetry]` table as written in a config file: every key optional, unknown keys
/// refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// `otlp_endpoint` (env `OTEL_EXPORTER_OTLP_ENDPOINT`): the collector's OTLP/HTTP base URL,
    /// e.g. `http://127.0.0.1:4318`. Unset: no traces are exported and no OpenTelemetry layer
    /// is installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `sample_ratio` (env `OTEL_TRACES_SAMPLER_ARG`): the share of new traces kept, 0.0 to
    /// 1.0; default [`DEFAULT_SAMPLE_RATIO`]. A trace continued from a caller's sampled
    /// `traceparent` is kept whatever the ratio (parent-based sampling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<f64>,
}

/// Validated telemetry settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// Where spans go (the full OTLP/HTTP traces URL), or `None`: logs only.
    pub traces_endpoint: Option<String>,
    /// The share of new traces kept (0.0 to 1.0).
    pub sample_ratio: f64,
    /// The `service.name` of exported spans.
    pub service_name: String,
}

impl TelemetrySettings {
    /// Logs only: nothing exported, no OpenTelemetry layer.
    pub fn off(service_name: impl Into<String>) -> Self {
        Self {
            traces_endpoint: None,
            sample_ratio: DEFAULT_SAMPLE_RATIO,
            service_name: service_name.into(),
        }
    }

    /// Validates `raw` after the standard environment variables in `env` (which win over
    /// the file, like every other environment override of the services).
    pub fn resolve(
        mut raw: RawTelemetry,
        env: &HashMap<String, String>,
        service_name: &str,
    ) -> Result<Self, TelemetryError> {
        let get = |k: &str| {
            env.get(k)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        if let Some(v) = get(ENV_OTLP_ENDPOINT) {
            raw.otlp_endpoint = Some(v);
        }
        if let Some(v) = get(ENV_SAMPLER_ARG) {
            let ratio = v.parse::<f64>().map_err(|_| {
                TelemetryError::invalid(
                    "telemetry.sample_ratio (env OTEL_TRACES_SAMPLER_ARG)",
                    format!("{v:?} is not a number"),
                )
            })?;
            raw.sample_ratio = Some(ratio);
        }
        let sample_ratio = raw.sample_ratio.unwrap_or(DEFAULT_SAMPLE_RATIO);
        if !(sample_ratio.is_finite() && (0.0..=1.0).contains(&sample_ratio)) {
            return Err(TelemetryError::invalid(
                "telemetry.sample_ratio",
                "must be a number from 0.0 to 1.0",
            ));
        }
        let traces_endpoint = match get(ENV_OTLP_TRACES_ENDPOINT) {
            Some(full) => Some(check_url("telemetry.otlp_endpoint", full)?),
            None => match raw.otlp_endpoint.filter(|e| !e.trim().is_empty()) {
                Some(base) => Some(traces_url(&check_url("telemetry.otlp_endpoint", base)?)),
                None => None,
            },
        };
        Ok(Self {
            traces_endpoint,
            sample_ratio,
            service_name: get(ENV_SERVICE_NAME).unwrap_or_else(|| service_name.to_owned()),
        })
    }
}

fn check_url(key: &str, url: String) -> Result<String, TelemetryError> {
    let url = url.trim().to_owned();
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(url),
        _ => Err(TelemetryError::invalid(
            key,
            format!("{url:?} is not an http(s) URL like \"http://127.0.0.1:4318\""),
        )),
    }
}

/// The traces URL of an OTLP base endpoint, as the OTLP exporter specification builds it.
fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unset_means_off_with_the_full_ratio() {
        let s = TelemetrySettings::resolve(RawTelemetry::default(), &env(&[]), "svc").unwrap();
        assert_eq!(s, TelemetrySettings::off("svc"));
        assert_eq!(s.sample_ratio, 1.0);
    }

    #[test]
    fn the_file_endpoint_gets_the_traces_path_and_env_wins() {
        let raw = RawTelemetry {
            otlp_endpoint: Some("http://collector:4318/".into()),
            sample_ratio: Some(0.25),
        };
        let s = TelemetrySettings::resolve(raw.clone(), &env(&[]), "svc").unwrap();
        assert_eq!(
            s.traces_endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(s.sample_ratio, 0.25);
        let s = TelemetrySettings::resolve(
            raw.clone(),
            &env(&[
                (ENV_OTLP_ENDPOINT, "http://other:4318"),
                (ENV_SAMPLER_ARG, "0.1"),
                (ENV_SERVICE_NAME, "renamed"),
            ]),
            "svc",
        )
        .unwrap();
        assert_eq!(
            s.traces_endpoint.as_deref(),
            Some("http://other:4318/v1/traces")
        );
        assert_eq!(s.sample_ratio, 0.1);
        assert_eq!(s.service_name, "renamed");
        let s = TelemetrySettings::resolve(
            raw,
            &env(&[(ENV_OTLP_TRACES_ENDPOINT, "http://t:1/custom")]),
            "svc",
        )
        .unwrap();
        assert_eq!(s.traces_endpoint.as_deref(), Some("http://t:1/custom"));
    }

    #[test]
    fn bad_values_are_typed_errors() {
        for (raw, env_pairs) in [
            (
                RawTelemetry {
                    sample_ratio: Some(1.5),
                    ..RawTelemetry::default()
                },
                vec![],
            ),
            (
                RawTelemetry {
                    sample_ratio: Some(f64::NAN),
                    ..RawTelemetry::default()
                },
                vec![],
            ),
            (RawTelemetry::default(), vec![(ENV_SAMPLER_ARG, "half")]),
            (
                RawTelemetry {
                    otlp_endpoint: Some("collector:4318".into()),
                    ..RawTelemetry::default()
                },
                vec![],
            ),
            (
                RawTelemetry::default(),
                vec![(ENV_OTLP_ENDPOINT, "ftp://x")],
            ),
        ] {
            let err = TelemetrySettings::resolve(raw, &env(&env_pairs), "svc").unwrap_err();
            assert!(err.to_string().contains("telemetry."), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<RawTelemetry>("otlp_endpoint = \"http://x\"\nratio = 1\n");
        assert!(err.is_err());
    }
}
