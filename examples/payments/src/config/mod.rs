//! Configuration: a TOML file, environment overrides for secrets and URLs, command-line flags
//! on top, then validation that names the offending key.
//!
//! Precedence, lowest to highest: built-in defaults, the TOML file (`--config PATH`), the
//! environment, flags. Unknown keys are errors. As in the webhook, one file per section holds
//! its raw form (`Raw*`, every key optional), its validated type and the checks between them;
//! validation runs once, on the merged raw form, because whether a key is required depends on
//! the end result (a missing secret is generated in demo mode, refused with a database).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use steadfast_service_kit::secret::{Secret, generate_missing};

mod momo;
mod rate_limit;
mod storage;
mod telemetry;
mod tokens;

pub use momo::{DEFAULT_REQUEST_TIMEOUT, DEMO_ALLOWED_IPS, MIN_SECRET_LEN, MomoConfig, RawMomo};
pub use rate_limit::DEFAULT_RATE_PER_MINUTE;
pub use steadfast_service_kit::config::ConfigError;
pub use steadfast_service_kit::ratelimit::{RateLimitConfig, RawRateLimit};
pub use storage::{Backend, DEFAULT_POOL_SIZE, DEFAULT_SQLITE_PATH, RawStorage, StorageConfig};
pub use telemetry::{RawTelemetry, SERVICE_NAME, TelemetrySettings};
pub use tokens::{MIN_TOKEN_LEN, RawAdmin, RawApi};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Bearer token of `/v1`.
    pub api_token: Secret,
    /// Bearer token of `/admin`.
    pub admin_token: Secret,
    /// The mobile-money provider.
    pub momo: MomoConfig,
    /// Rate limit on `/momo/callback`.
    pub rate_limit: RateLimitConfig,
    /// Storage.
    pub storage: StorageConfig,
    /// Traces: the OTLP endpoint (none: logs only) and the sample ratio.
    pub telemetry: TelemetrySettings,
    /// Values generated because none were configured (any backend but Postgres); the binary
    /// prints them once.
    pub generated: Vec<(String, String)>,
}

impl Config {
    /// Demo mode: the in-memory stores (`--demo` or `storage.backend = "memory"`).
    pub fn is_demo(&self) -> bool {
        self.storage.backend == Backend::Memory
    }

    /// Loads and validates: `path` (if any), then `env`, then `overrides`.
    pub fn load(
        path: Option<&Path>,
        env: &HashMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let raw = match path {
            Some(path) => RawConfig::read(path)?,
            None => RawConfig::default(),
        };
        Self::from_raw(raw, env, overrides)
    }

    /// Loads from TOML text, then `env`, then `overrides` (tests).
    pub fn from_toml(
        text: &str,
        env: &HashMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        Self::from_raw(RawConfig::parse(text, "<inline>")?, env, overrides)
    }

    /// Validates `raw` after applying `env`, then `overrides`.
    pub fn from_raw(
        mut raw: RawConfig,
        env: &HashMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        apply_env(&mut raw, env)?;
        if let Some(l) = &overrides.listen {
            raw.listen = Some(l.clone());
        }
        if overrides.demo {
            raw.storage.backend = Some(Backend::Memory.as_str().to_owned());
        }
        // The standard OTEL_* variables are read by the shared section itself.
        let telemetry = telemetry::settings(std::mem::take(&mut raw.telemetry), env)?;
        let mut config = validate(raw)?;
        config.telemetry = telemetry;
        Ok(config)
    }
}

/// Command-line values that override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--demo`: the in-memory stores (`storage.backend = "memory"`).
    pub demo: bool,
}

/// The config file as written: every key optional, unknown keys refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `listen` (env `LISTEN_ADDR`, flag `--listen`); default [`DEFAULT_LISTEN`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `[api]`.
    #[serde(default)]
    pub api: RawApi,
    /// `[admin]`.
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[momo]`.
    #[serde(default)]
    pub momo: RawMomo,
    /// `[rate_limit]`.
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    /// `[storage]`.
    #[serde(default)]
    pub storage: RawStorage,
    /// `[telemetry]`.
    #[serde(default)]
    pub telemetry: RawTelemetry,
}

impl RawConfig {
    /// Parses TOML text; `path` names the source in the error.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
    }

    fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }
}

/// Environment variables read, and the key each sets.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("LISTEN_ADDR", "listen"),
    ("PAYMENTS_API_TOKEN", "api.token"),
    ("ADMIN_TOKEN", "admin.token"),
    ("MOMO_CALLBACK_SECRET", "momo.callback_secret"),
    ("MOMO_API_KEY", "momo.api_key"),
    ("DATABASE_URL", "storage.database_url"),
    ("REDIS_URL", "storage.redis_url"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
    ("OTEL_TRACES_SAMPLER_ARG", "telemetry.sample_ratio"),
];

fn apply_env(raw: &mut RawConfig, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let get = |k: &str| env.get(k).filter(|v| !v.trim().is_empty()).cloned();
    if let Some(v) = get("LISTEN_ADDR") {
        raw.listen = Some(v);
    }
    let secrets = [
        ("PAYMENTS_API_TOKEN", &mut raw.api.token),
        ("ADMIN_TOKEN", &mut raw.admin.token),
        ("MOMO_CALLBACK_SECRET", &mut raw.momo.callback_secret),
        ("MOMO_API_KEY", &mut raw.momo.api_key),
        ("DATABASE_URL", &mut raw.storage.database_url),
        ("REDIS_URL", &mut raw.storage.redis_url),
    ];
    for (name, slot) in secrets {
        if let Some(v) = get(name) {
            *slot = Some(Secret::new(v));
        }
    }
    Ok(())
}

/// Without Postgres (SQLite or memory) the secrets not given are generated and recorded for
/// the binary to print once. With Postgres nothing is generated: a missing secret is an error.
fn generate_demo_secrets(raw: &mut RawConfig, backend: Backend) -> Vec<(String, String)> {
    if backend == Backend::Postgres {
        return Vec::new();
    }
    generate_missing([
        ("api.token", &mut raw.api.token),
        ("admin.token", &mut raw.admin.token),
        ("momo.callback_secret", &mut raw.momo.callback_secret),
        ("momo.api_key", &mut raw.momo.api_key),
    ])
}

fn validate(mut raw: RawConfig) -> Result<Config, ConfigError> {
    let text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = text.parse().map_err(|_| {
        ConfigError::invalid(
            "listen",
            format!("{text:?} is not an address like \"{DEFAULT_LISTEN}\""),
        )
    })?;
    // Storage first: whether the rest is demo or production depends on it.
    let storage = StorageConfig::try_from(raw.storage.clone())?;
    // Without Postgres "nothing configured" stays one command: secrets generated, the fake
    // provider (see `MomoConfig`); with SQLite the data is durable all the same.
    let demo = storage.backend != Backend::Postgres;
    let generated = generate_demo_secrets(&mut raw, storage.backend);
    let api_token = tokens::token("api.token", raw.api.token)?;
    let admin_token = tokens::token("admin.token", raw.admin.token)?;
    if api_token == admin_token {
        return Err(ConfigError::invalid(
            "admin.token",
            "must differ from api.token (an API client must not be an operator)",
        ));
    }
    Ok(Config {
        listen,
        api_token,
        admin_token,
        momo: MomoConfig::from_raw(raw.momo, demo)?,
        rate_limit: RateLimitConfig::resolve(raw.rate_limit, DEFAULT_RATE_PER_MINUTE)?,
        storage,
        telemetry: TelemetrySettings::off(SERVICE_NAME),
        generated,
    })
}

#[cfg(test)]
mod tests;
