//! Configuration: a TOML file, environment overrides for secrets and URLs, command-line flags on
//! top, then validation that names the offending key.
//!
//! Precedence, lowest to highest: built-in defaults, the TOML file (`--config PATH` or
//! `STEADFAST_CONFIG`), environment variables, command-line flags. Every duration and size key
//! carries its unit in its name (`request_timeout_ms`, `body_limit_bytes`) so a file reads
//! unambiguously.
//!
//! With no `DATABASE_URL` the service runs on a SQLite file (`storage.sqlite_path`): durable,
//! single instance. In-memory stores are an explicit choice (`storage.backend = "memory"` or
//! `--demo`). Without Postgres, "nothing configured" stays a one-command run: any missing app
//! secret / verify token / admin token is generated (and printed once by the binary), and
//! services without endpoints get the built-in echo downstream. With Postgres (production,
//! several instances) nothing is generated: a missing secret or endpoint is an error.
//!
//! # Layout
//!
//! One file per section of the file. Each holds the section's raw form (`Raw*`: what the
//! file says, every key optional, unknown keys refused; `Serialize` too, so a tool such as the
//! load generator writes a config through these types), its validated public type, the
//! `TryFrom` between them with the section's checks, and the methods that build the crates'
//! configurations the section owns ([`WorkerConfig::queue_config`],
//! [`BreakerSpec::breaker_config`], [`ServiceConfig::registry_config`]).
//!
//! # Why file → env → flags → validation
//!
//! The file is deserialised into the raw forms only, not validated: an environment variable or a
//! flag may still replace a value the file got wrong or left out (`DATABASE_URL`, a secret, the
//! services' endpoints), and whether a key is required depends on the end result (a missing
//! secret is generated in demo mode, refused with a database). So validation runs once, on
//! the merged raw form: each section's `TryFrom`, then the few checks that span sections,
//! here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
#[cfg(test)]
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod actions;
mod admin;
mod check;
mod conversation;
mod http;
mod rate_limit;
mod services;
mod storage;
mod telemetry;
mod whatsapp;
mod worker;

pub use actions::{ActionsConfig, RawActions};
pub use admin::{AdminConfig, RawAdmin};
pub use conversation::{ConversationConfig, DEFAULT_CONVERSATION_RETENTION_DAYS, RawConversation};
pub use http::{
    DEFAULT_BODY_LIMIT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_KEEP_ALIVE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MESSAGES_PER_DELIVERY, HttpConfig, RawHttp,
};
pub use rate_limit::DEFAULT_RATE_PER_MINUTE;
pub use services::{
    BreakerSpec, CustomBreaker, DEFAULT_FALLBACK_REPLY, RawBreaker, RawRouting, RawService,
    SEED_DEFAULT_SERVICE, ServiceConfig, seed_services,
};
pub use steadfast_service_kit::config::ConfigError;
pub use steadfast_service_kit::ratelimit::{RateLimitConfig, RawRateLimit};
pub use steadfast_service_kit::secret::{Secret, generate_missing};
pub use storage::{
    Backend, DEFAULT_DEDUP_WINDOW, DEFAULT_SQLITE_PATH, DEFAULT_STORE_TIMEOUT, RawStorage,
    StorageConfig,
};
pub use telemetry::{RawTelemetry, SERVICE_NAME, TelemetrySettings};
pub use whatsapp::{DEFAULT_GRAPH_API_URL, MIN_SECRET_LEN, RawWhatsApp, WhatsAppConfig};
pub use worker::{DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_RETRY_HORIZON, RawWorker, WorkerConfig};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// A second listener for `/metrics`, `/health` and `/admin`; when set they are served
    /// there only (`/health` stays on `listen` too, for load balancers). `None`: everything
    /// on `listen`.
    pub ops_listen: Option<SocketAddr>,
    /// WhatsApp.
    pub whatsapp: WhatsAppConfig,
    /// Admin API bearer token; the admin API is disabled (404) when unset.
    pub admin_token: Option<Secret>,
    /// Downstream services, in routing priority order.
    pub services: Vec<ServiceConfig>,
    /// The service that gets messages no keyword matched.
    pub default_service: String,
    /// Reply sent when a message's last attempt failed because its service was down (a
    /// service's own `fallback_reply` wins); `None` sends nothing.
    pub fallback_reply: Option<String>,
    /// HTTP ingestion.
    pub http: HttpConfig,
    /// Rate limit.
    pub rate_limit: RateLimitConfig,
    /// Storage.
    pub storage: StorageConfig,
    /// Worker.
    pub worker: WorkerConfig,
    /// Conversations.
    pub conversation: ConversationConfig,
    /// The actions a downstream reply may ask for.
    pub actions: ActionsConfig,
    /// Traces: the OTLP endpoint (none: logs only) and the sample ratio.
    pub telemetry: TelemetrySettings,
    /// Values generated because none were configured (any backend but Postgres); the binary
    /// prints them once.
    pub generated: Vec<(String, String)>,
    /// Services whose endpoints are to be filled with the built-in echo downstream (no
    /// endpoints configured, any backend but Postgres).
    pub echo_services: Vec<String>,
    /// Serve `/webhook` (false for a worker-only process).
    pub ingest_enabled: bool,
}

impl Config {
    /// Demo mode: the in-memory stores (`--demo` or `storage.backend = "memory"`); nothing is
    /// durable.
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

    /// Only the database URL (env `DATABASE_URL` over the file's `storage.database_url`), for
    /// the `migrate` subcommand, which needs nothing else.
    pub fn database_url(
        path: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Option<Secret>, ConfigError> {
        if let Some(v) = env.get("DATABASE_URL").filter(|v| !v.trim().is_empty()) {
            return Ok(Some(Secret::new(v.clone())));
        }
        let Some(path) = path else { return Ok(None) };
        Ok(RawConfig::read(path)?.storage.database_url)
    }

    /// Loads from TOML text (no file), then `env`, then `overrides`. Used by tests.
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
        apply_overrides(&mut raw, overrides);
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
    /// `--no-worker`.
    pub no_worker: bool,
    /// `--worker-concurrency`.
    pub worker_concurrency: Option<usize>,
    /// `--rate-limit-per-minute`.
    pub rate_limit_per_minute: Option<u32>,
    /// `--demo`: the in-memory stores (`storage.backend = "memory"`).
    pub demo: bool,
}

/// The config file as written, before env, flags and validation: every key optional, unknown
/// keys refused. Serialising it writes a config file (unset keys and empty tables left out);
/// see the section types for each key's meaning and default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `listen` (env `LISTEN_ADDR`, flag `--listen`); default [`DEFAULT_LISTEN`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `ops_listen` (env `OPS_LISTEN_ADDR`); unset serves everything on `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_listen: Option<String>,
    /// `[whatsapp]`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub whatsapp: RawWhatsApp,
    /// `[admin]`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub admin: RawAdmin,
    /// `[[services]]`; unset configures [`seed_services`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<RawService>>,
    /// `[routing]`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub routing: RawRouting,
    /// `[http]`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub http: RawHttp,
    /// `[rate_limit]`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub rate_limit: RawRateLimit,
    /// `[storage]`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub storage: RawStorage,
    /// `[worker]`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub worker: RawWorker,
    /// `[conversation]`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub conversation: RawConversation,
    /// `[actions]`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub actions: RawActions,
    /// `[telemetry]`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub telemetry: RawTelemetry,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
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

    /// The TOML text of this config, as [`RawConfig::parse`] reads it back. Secrets are
    /// written in clear: this is for writing a config file.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

// ---- env and flags -------------------------------------------------------------------------

/// Environment variables read (besides `STEADFAST_CONFIG`, read by the binary).
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("LISTEN_ADDR", "listen"),
    ("OPS_LISTEN_ADDR", "ops_listen"),
    ("WHATSAPP_APP_SECRET", "whatsapp.app_secret"),
    ("WHATSAPP_VERIFY_TOKEN", "whatsapp.verify_token"),
    ("WHATSAPP_ACCESS_TOKEN", "whatsapp.access_token"),
    ("WHATSAPP_GRAPH_API_URL", "whatsapp.graph_api_url"),
    ("ADMIN_TOKEN", "admin.token"),
    ("DATABASE_URL", "storage.database_url"),
    ("REDIS_URL", "storage.redis_url"),
    ("RATE_LIMIT_PER_MINUTE", "rate_limit.per_minute"),
    ("WORKER_CONCURRENCY", "worker.concurrency"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
    ("OTEL_TRACES_SAMPLER_ARG", "telemetry.sample_ratio"),
    (
        "DOWNSTREAM_URL",
        "every service's endpoints = [\"$DOWNSTREAM_URL/<service name>\"]",
    ),
    (
        "SERVICE_<NAME>_ENDPOINTS",
        "services[name].endpoints (comma-separated; NAME upper-case, '-' as '_')",
    ),
];

fn apply_env(raw: &mut RawConfig, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let get = |k: &str| env.get(k).filter(|v| !v.trim().is_empty()).cloned();
    if let Some(v) = get("LISTEN_ADDR") {
        raw.listen = Some(v);
    }
    if let Some(v) = get("OPS_LISTEN_ADDR") {
        raw.ops_listen = Some(v);
    }
    if let Some(v) = get("WHATSAPP_APP_SECRET") {
        raw.whatsapp.app_secret = Some(Secret::new(v));
    }
    if let Some(v) = get("WHATSAPP_VERIFY_TOKEN") {
        raw.whatsapp.verify_token = Some(Secret::new(v));
    }
    if let Some(v) = get("WHATSAPP_ACCESS_TOKEN") {
        raw.whatsapp.access_token = Some(Secret::new(v));
    }
    if let Some(v) = get("WHATSAPP_GRAPH_API_URL") {
        raw.whatsapp.graph_api_url = Some(v);
    }
    if let Some(v) = get("ADMIN_TOKEN") {
        raw.admin.token = Some(Secret::new(v));
    }
    if let Some(v) = get("DATABASE_URL") {
        raw.storage.database_url = Some(Secret::new(v));
    }
    if let Some(v) = get("REDIS_URL") {
        raw.storage.redis_url = Some(Secret::new(v));
    }
    if let Some(v) = get("RATE_LIMIT_PER_MINUTE") {
        raw.rate_limit.per_minute = Some(whole_number(
            &v,
            "rate_limit.per_minute (env RATE_LIMIT_PER_MINUTE)",
        )?);
    }
    if let Some(v) = get("WORKER_CONCURRENCY") {
        raw.worker.concurrency = Some(whole_number(
            &v,
            "worker.concurrency (env WORKER_CONCURRENCY)",
        )?);
    }
    // Services: materialise the seed first so env can point them somewhere.
    let services = raw.services.get_or_insert_with(|| {
        raw.routing
            .default_service
            .get_or_insert_with(|| SEED_DEFAULT_SERVICE.to_owned());
        seed_services()
    });
    if let Some(base) = get("DOWNSTREAM_URL") {
        let base = base.trim_end_matches('/');
        for s in services.iter_mut() {
            s.endpoints = vec![format!("{base}/{}", s.name)];
        }
    }
    for s in services.iter_mut() {
        let key = format!(
            "SERVICE_{}_ENDPOINTS",
            s.name.to_ascii_uppercase().replace('-', "_")
        );
        if let Some(v) = get(&key) {
            s.endpoints = v
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect();
        }
    }
    Ok(())
}

fn whole_number<T: std::str::FromStr>(value: &str, key: &str) -> Result<T, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| ConfigError::invalid(key, format!("{value:?} is not a whole number")))
}

fn apply_overrides(raw: &mut RawConfig, o: &Overrides) {
    if let Some(l) = &o.listen {
        raw.listen = Some(l.clone());
    }
    if o.no_worker {
        raw.worker.enabled = Some(false);
    }
    if let Some(c) = o.worker_concurrency {
        raw.worker.concurrency = Some(c);
    }
    if let Some(r) = o.rate_limit_per_minute {
        raw.rate_limit.per_minute = Some(r);
    }
    if o.demo {
        raw.storage.backend = Some(Backend::Memory.as_str().to_owned());
    }
}

// ---- demo secrets and cross-section checks -------------------------------------------------

/// Without Postgres (SQLite or memory) the secrets not given are generated and recorded for
/// the binary to print once, so that the first run needs no set-up. With Postgres nothing is
/// generated: a missing secret is an error.
fn generate_demo_secrets(raw: &mut RawConfig, backend: Backend) -> Vec<(String, String)> {
    if backend == Backend::Postgres {
        return Vec::new();
    }
    generate_missing([
        ("whatsapp.app_secret", &mut raw.whatsapp.app_secret),
        ("whatsapp.verify_token", &mut raw.whatsapp.verify_token),
        ("admin.token", &mut raw.admin.token),
    ])
}

fn address(key: &str, text: &str, example: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{text:?} is not an address like \"{example}\""),
        )
    })
}

fn validate(mut raw: RawConfig) -> Result<Config, ConfigError> {
    let listen = address(
        "listen",
        raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
        "127.0.0.1:8080",
    )?;
    let ops_listen = match raw.ops_listen.as_deref().filter(|t| !t.trim().is_empty()) {
        None => None,
        Some(text) => {
            let addr = address("ops_listen", text, "127.0.0.1:9090")?;
            if addr == listen && addr.port() != 0 {
                return Err(ConfigError::invalid(
                    "ops_listen",
                    "must differ from listen (leave it unset to serve everything on listen)",
                ));
            }
            Some(addr)
        }
    };

    // Storage first: which backend decides what "not configured" means for the rest.
    let storage = StorageConfig::try_from(std::mem::take(&mut raw.storage))?;
    let demo = storage.backend != Backend::Postgres;
    let generated = generate_demo_secrets(&mut raw, storage.backend);
    let whatsapp = WhatsAppConfig::try_from(raw.whatsapp)?;
    let admin = AdminConfig::try_from(raw.admin)?;

    let services = services::services(raw.services.unwrap_or_default())?;
    // Without Postgres, a service without endpoints is answered by the built-in echo downstream.
    let mut echo_services = Vec::new();
    for (i, s) in services.iter().enumerate() {
        if s.endpoints.is_empty() {
            if !demo {
                return Err(ConfigError::invalid(
                    format!("services[{i}].endpoints"),
                    "needs at least one URL (or set DOWNSTREAM_URL / SERVICE_<NAME>_ENDPOINTS)",
                ));
            }
            echo_services.push(s.name.clone());
        }
    }
    let routing = services::Routing::from(raw.routing);
    let default_service = match routing.default_service {
        Some(d) => d,
        None => services[services.len() - 1].name.clone(),
    };
    if !services.iter().any(|s| s.name == default_service) {
        return Err(ConfigError::invalid(
            "routing.default_service",
            format!("{default_service:?} is not the name of a [[services]] entry"),
        ));
    }

    let max_delivery_age_set = raw.http.max_delivery_age_seconds.is_some();
    let mut http = HttpConfig::try_from(raw.http)?;
    let rate_limit = RateLimitConfig::resolve(raw.rate_limit, DEFAULT_RATE_PER_MINUTE)?;
    // A delivery older than the dedup window could be a duplicate the store has forgotten.
    if !max_delivery_age_set {
        http.max_delivery_age = storage.dedup_window;
    }
    let worker = WorkerConfig::try_from(raw.worker)?;
    let conversation = ConversationConfig::try_from(raw.conversation)?;
    let actions = ActionsConfig::try_from(raw.actions)?;

    Ok(Config {
        listen,
        ops_listen,
        whatsapp,
        admin_token: admin.token,
        services,
        default_service,
        fallback_reply: routing.fallback_reply,
        http,
        rate_limit,
        storage,
        worker,
        conversation,
        actions,
        telemetry: TelemetrySettings::off(SERVICE_NAME),
        generated,
        echo_services,
        ingest_enabled: true,
    })
}

#[cfg(test)]
mod tests;
