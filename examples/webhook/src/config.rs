//! Configuration: a TOML file, environment overrides for secrets and URLs, command-line flags on
//! top, then validation that names the offending key.
//!
//! Precedence, lowest to highest: built-in defaults, the TOML file (`--config PATH` or
//! `STEADFAST_CONFIG`), environment variables, command-line flags. Every duration and size key
//! carries its unit in its name (`request_timeout_ms`, `body_limit_bytes`) so a file reads
//! unambiguously.
//!
//! With no `DATABASE_URL` the service runs in demo mode: in-memory stores, and any missing
//! app secret / verify token / admin token is generated (and printed once by the binary).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// A configuration problem, naming the key (a dotted path such as `services[1].endpoints[0]`)
/// and what is wrong with it. Start-up stops on it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key holds a value the service cannot use.
    #[error("config key `{key}`: {problem}")]
    Invalid {
        /// The dotted key path.
        key: String,
        /// What is wrong, and what would be accepted.
        problem: String,
    },
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this service (unknown key, wrong type, syntax).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, with the line and the key.
        message: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The key the error is about, when it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// A secret string: shown as `***` by `Debug` and `Display`, so that logging a config never
/// leaks it. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The WhatsApp Cloud API side.
#[derive(Debug, Clone)]
pub struct WhatsAppConfig {
    /// The app secret that signs deliveries (`X-Hub-Signature-256`).
    pub app_secret: Secret,
    /// The token Meta sends in the GET handshake.
    pub verify_token: Secret,
    /// Bearer token for outbound Graph API calls. `None` (demo mode) logs replies instead.
    pub access_token: Option<Secret>,
    /// Graph API base URL, e.g. `https://graph.facebook.com/v21.0`.
    pub graph_api_url: String,
    /// Timeout of one Graph API call.
    pub graph_timeout: Duration,
}

/// Which breaker guards a service's endpoints.
#[derive(Debug, Clone, PartialEq)]
pub enum BreakerSpec {
    /// 50% failures over the window opens it for 60 s.
    Standard,
    /// For slow AI agents: 60% failures opens it for 120 s.
    AiAgent,
    /// Explicit thresholds.
    Custom(CustomBreaker),
}

/// Thresholds of an inline `breaker = { ... }` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomBreaker {
    /// Failure rate (percent of calls in the window) that opens the breaker.
    pub failure_rate_percent: f64,
    /// How long the breaker stays open before probing.
    pub open_seconds: u64,
    /// Calls in the sliding window.
    #[serde(default = "default_window_size")]
    pub window_size: u32,
    /// Calls needed before the rate is judged.
    #[serde(default = "default_minimum_calls")]
    pub minimum_calls: u32,
}

fn default_window_size() -> u32 {
    20
}

fn default_minimum_calls() -> u32 {
    5
}

/// One downstream service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The service's name (also the route target).
    pub name: String,
    /// Full URLs the message is POSTed to; the registry balances over the healthy ones.
    pub endpoints: Vec<String>,
    /// Lower-case keywords or phrases that route a message here.
    pub keywords: Vec<String>,
    /// The breaker guarding each endpoint.
    pub breaker: BreakerSpec,
    /// Timeout of one call to one endpoint.
    pub timeout: Duration,
    /// Reply sent to the user when the last attempt failed because every endpoint was down
    /// (overrides `routing.fallback_reply`).
    pub fallback_reply: Option<String>,
}

/// Storage selection.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Postgres: queue, dead letters, conversations. `None` runs the in-memory demo stores.
    pub database_url: Option<Secret>,
    /// Redis: the de-duplication fast path. Optional even with Postgres.
    pub redis_url: Option<Secret>,
    /// Pool size of the Postgres pool.
    pub pool_size: u32,
    /// How long the Redis fast path remembers a message id.
    pub dedup_window: Duration,
    /// Name of the queue in the queue store.
    pub queue_name: String,
    /// Prefix of the Redis fast-path keys.
    pub redis_prefix: String,
    /// The longest one store call may take: Postgres `statement_timeout` on the pool, and a
    /// client-side bound around each worker store call (a stalled database fails the call
    /// instead of hanging a worker slot; the message's lease recovers it).
    pub store_timeout: Duration,
}

/// The worker that drains the queue.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Run the worker in this process.
    pub enabled: bool,
    /// Messages handled at once.
    pub concurrency: usize,
    /// Attempts before a message becomes a dead letter.
    pub max_attempts: u32,
    /// First retry delay.
    pub backoff_initial: Duration,
    /// Growth factor of the retry delay.
    pub backoff_multiplier: f64,
    /// Cap of one retry delay.
    pub backoff_max: Duration,
    /// How often an idle worker polls the queue.
    pub poll_interval: Duration,
    /// How long a claimed message stays leased before another worker may take it.
    pub lease: Duration,
    /// The largest downstream response body read; a larger one fails the attempt as
    /// `downstream_too_large` (not retried).
    pub max_response_bytes: usize,
    /// How long a message may wait (retrying, or snoozed behind an open breaker) from its
    /// first failure or snooze before it becomes a dead letter.
    pub retry_horizon: Duration,
}

/// Conversations. The idle timeout (30 minutes in `awaiting_input` / `agent_active`) and the
/// history length (20 messages) are those of the conversation machine.
#[derive(Debug, Clone)]
pub struct ConversationConfig {
    /// How often the sweeper looks for conversations whose state timed out.
    pub sweep_interval: Duration,
    /// Conversations (message bodies keyed by phone number) idle for longer than this are
    /// deleted by the retention loop: the service's personal-data retention.
    pub retention: Duration,
}

/// HTTP ingestion.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted body; larger gets 413.
    pub body_limit_bytes: usize,
    /// A request still running after this answers 408.
    pub request_timeout: Duration,
    /// Take the client IP from `X-Forwarded-For` (behind a trusted proxy only).
    pub trust_forwarded_for: bool,
    /// How many trusted proxies append to `X-Forwarded-For`: the client is the entry this many
    /// places from the right (1 when `trust_forwarded_for` is on and the key is unset).
    pub trusted_proxy_hops: usize,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Duration,
    /// Connections served at once; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// A connection that has not sent a complete request head within this is closed.
    pub header_read_timeout: Duration,
    /// A kept-alive connection idle (no request in flight) for this long is closed.
    pub keep_alive_timeout: Duration,
    /// Messages one delivery may carry; more answers 413 and stores nothing.
    pub max_messages_per_delivery: usize,
    /// A delivery whose every message and status timestamp is older than this is answered
    /// 200 and counted `stale`, not stored (a captured delivery replayed later).
    pub max_delivery_age: Duration,
}

/// Per-client-IP rate limit.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// Requests per minute per client IP; 0 disables the limit.
    pub per_minute: u32,
    /// Requests allowed back to back (GCRA burst). Defaults to `per_minute`.
    pub burst: u32,
}

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
    /// Values generated because demo mode had none; the binary prints them once.
    pub generated: Vec<(String, String)>,
    /// Services whose endpoints are to be filled with the built-in echo downstream (demo mode).
    pub echo_services: Vec<String>,
    /// Serve `/webhook` (false for a worker-only process).
    pub ingest_enabled: bool,
}

impl Config {
    /// Demo mode: no durable store configured.
    pub fn is_demo(&self) -> bool {
        self.storage.database_url.is_none()
    }

    /// Loads and validates: `path` (if any), then `env`, then `overrides`.
    pub fn load(
        path: Option<&Path>,
        env: &HashMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                FileConfig::parse(&text, &path.display().to_string())?
            }
            None => FileConfig::default(),
        };
        Self::from_parts(file, env, overrides)
    }

    /// Only the database URL (env `DATABASE_URL` over the file's `storage.database_url`), for
    /// the `migrate` subcommand, which needs nothing else.
    pub fn database_url(
        path: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Option<Secret>, ConfigError> {
        if let Some(v) = env.get("DATABASE_URL").filter(|v| !v.trim().is_empty()) {
            return Ok(Some(Secret(v.clone())));
        }
        let Some(path) = path else { return Ok(None) };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(FileConfig::parse(&text, &path.display().to_string())?
            .storage
            .database_url)
    }

    /// Loads from TOML text (no file), then `env`, then `overrides`. Used by tests.
    pub fn from_toml(
        text: &str,
        env: &HashMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        Self::from_parts(FileConfig::parse(text, "<inline>")?, env, overrides)
    }

    fn from_parts(
        mut file: FileConfig,
        env: &HashMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        apply_env(&mut file, env)?;
        apply_overrides(&mut file, overrides);
        validate(file)
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
}

// ---- the file's shape ----------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    ops_listen: Option<String>,
    #[serde(default)]
    whatsapp: FileWhatsApp,
    #[serde(default)]
    admin: FileAdmin,
    services: Option<Vec<FileService>>,
    #[serde(default)]
    routing: FileRouting,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    rate_limit: FileRateLimit,
    #[serde(default)]
    storage: FileStorage,
    #[serde(default)]
    worker: FileWorker,
    #[serde(default)]
    conversation: FileConversation,
}

impl FileConfig {
    fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWhatsApp {
    app_secret: Option<Secret>,
    verify_token: Option<Secret>,
    access_token: Option<Secret>,
    graph_api_url: Option<String>,
    graph_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAdmin {
    token: Option<Secret>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileBreaker {
    Preset(String),
    Custom(CustomBreaker),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileService {
    name: String,
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    keywords: Vec<String>,
    breaker: Option<FileBreaker>,
    timeout_ms: Option<u64>,
    fallback_reply: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRouting {
    default_service: Option<String>,
    fallback_reply: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    body_limit_bytes: Option<usize>,
    request_timeout_ms: Option<u64>,
    trust_forwarded_for: Option<bool>,
    trusted_proxy_hops: Option<usize>,
    shutdown_grace_ms: Option<u64>,
    max_connections: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    keep_alive_timeout_ms: Option<u64>,
    max_messages_per_delivery: Option<usize>,
    max_delivery_age_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRateLimit {
    per_minute: Option<u32>,
    burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    database_url: Option<Secret>,
    redis_url: Option<Secret>,
    pool_size: Option<u32>,
    dedup_window_seconds: Option<u64>,
    queue_name: Option<String>,
    redis_prefix: Option<String>,
    store_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWorker {
    enabled: Option<bool>,
    concurrency: Option<usize>,
    max_attempts: Option<u32>,
    backoff_initial_ms: Option<u64>,
    backoff_multiplier: Option<f64>,
    backoff_max_ms: Option<u64>,
    poll_interval_ms: Option<u64>,
    lease_seconds: Option<u64>,
    max_response_bytes: Option<usize>,
    retry_horizon_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConversation {
    sweep_interval_seconds: Option<u64>,
    retention_days: Option<u64>,
}

// ---- defaults --------------------------------------------------------------------------------

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default Graph API base URL.
pub const DEFAULT_GRAPH_API_URL: &str = "https://graph.facebook.com/v21.0";
/// Default body limit: 4 MiB (Meta sends up to 3 MB).
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Default fallback reply.
pub const DEFAULT_FALLBACK_REPLY: &str =
    "Sorry, we cannot answer right now. We will get back to you shortly.";
/// Default rate limit per client IP.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 300;
/// Default cap of concurrent connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default header-read timeout: a real client sends its request head in milliseconds.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Default keep-alive idle timeout.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap of messages per delivery: Meta batches at most 1000 updates in one delivery.
pub const DEFAULT_MAX_MESSAGES_PER_DELIVERY: usize = 1000;
/// Default cap of a downstream response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Default retry horizon: an hour of retries and snoozes, then a dead letter.
pub const DEFAULT_RETRY_HORIZON: Duration = Duration::from_secs(3600);
/// Default bound of one store call.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default conversation retention, in days.
pub const DEFAULT_CONVERSATION_RETENTION_DAYS: u64 = 30;
/// Shortest accepted app secret, verify token and admin token.
pub const MIN_SECRET_LEN: usize = 16;

/// The seed system's routing table, used when the config names no services.
fn default_services() -> Vec<(&'static str, &'static [&'static str], BreakerSpec)> {
    vec![
        ("jobs", &["jobs", "job"], BreakerSpec::Standard),
        (
            "property",
            &["rent property", "property", "rent"],
            BreakerSpec::Standard,
        ),
        ("mobility", &["book ride", "ride"], BreakerSpec::Standard),
        ("marketplace", &["shop"], BreakerSpec::Standard),
        ("ai-agent", &[], BreakerSpec::AiAgent),
    ]
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
    (
        "DOWNSTREAM_URL",
        "every service's endpoints = [\"$DOWNSTREAM_URL/<service name>\"]",
    ),
    (
        "SERVICE_<NAME>_ENDPOINTS",
        "services[name].endpoints (comma-separated; NAME upper-case, '-' as '_')",
    ),
];

fn apply_env(file: &mut FileConfig, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let get = |k: &str| env.get(k).filter(|v| !v.trim().is_empty()).cloned();
    if let Some(v) = get("LISTEN_ADDR") {
        file.listen = Some(v);
    }
    if let Some(v) = get("OPS_LISTEN_ADDR") {
        file.ops_listen = Some(v);
    }
    if let Some(v) = get("WHATSAPP_APP_SECRET") {
        file.whatsapp.app_secret = Some(Secret(v));
    }
    if let Some(v) = get("WHATSAPP_VERIFY_TOKEN") {
        file.whatsapp.verify_token = Some(Secret(v));
    }
    if let Some(v) = get("WHATSAPP_ACCESS_TOKEN") {
        file.whatsapp.access_token = Some(Secret(v));
    }
    if let Some(v) = get("WHATSAPP_GRAPH_API_URL") {
        file.whatsapp.graph_api_url = Some(v);
    }
    if let Some(v) = get("ADMIN_TOKEN") {
        file.admin.token = Some(Secret(v));
    }
    if let Some(v) = get("DATABASE_URL") {
        file.storage.database_url = Some(Secret(v));
    }
    if let Some(v) = get("REDIS_URL") {
        file.storage.redis_url = Some(Secret(v));
    }
    if let Some(v) = get("RATE_LIMIT_PER_MINUTE") {
        file.rate_limit.per_minute = Some(v.trim().parse().map_err(|_| {
            ConfigError::invalid(
                "rate_limit.per_minute (env RATE_LIMIT_PER_MINUTE)",
                format!("{v:?} is not a whole number"),
            )
        })?);
    }
    if let Some(v) = get("WORKER_CONCURRENCY") {
        file.worker.concurrency = Some(v.trim().parse().map_err(|_| {
            ConfigError::invalid(
                "worker.concurrency (env WORKER_CONCURRENCY)",
                format!("{v:?} is not a whole number"),
            )
        })?);
    }
    // Services: materialise the defaults first so env can point them somewhere.
    if file.services.is_none() {
        file.services = Some(
            default_services()
                .into_iter()
                .map(|(name, keywords, breaker)| FileService {
                    name: name.to_owned(),
                    endpoints: Vec::new(),
                    keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
                    breaker: Some(match breaker {
                        BreakerSpec::AiAgent => FileBreaker::Preset("ai_agent".into()),
                        _ => FileBreaker::Preset("standard".into()),
                    }),
                    timeout_ms: None,
                    fallback_reply: None,
                })
                .collect(),
        );
        if file.routing.default_service.is_none() {
            file.routing.default_service = Some("ai-agent".into());
        }
    }
    let services = file.services.as_mut().expect("set above");
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

fn apply_overrides(file: &mut FileConfig, o: &Overrides) {
    if let Some(l) = &o.listen {
        file.listen = Some(l.clone());
    }
    if o.no_worker {
        file.worker.enabled = Some(false);
    }
    if let Some(c) = o.worker_concurrency {
        file.worker.concurrency = Some(c);
    }
    if let Some(r) = o.rate_limit_per_minute {
        file.rate_limit.per_minute = Some(r);
    }
}

// ---- validation ------------------------------------------------------------------------------

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.split("://").nth(1).is_some_and(|rest| !rest.is_empty())
        && reqwest::Url::parse(url).is_ok();
    if ok {
        Ok(())
    } else {
        // Redacted: a start-up error is logged, and the URL may carry credentials.
        Err(ConfigError::invalid(
            key,
            format!(
                "{:?} is not an http:// or https:// URL",
                steadfast_service_registry::Endpoint::redact(url)
            ),
        ))
    }
}

/// Whether `url`'s host is a loopback address or `localhost`.
fn is_loopback_url(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn positive_ms(key: &str, v: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    match v {
        Some(0) => Err(ConfigError::invalid(key, "must be greater than 0")),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Ok(Duration::from_millis(default)),
    }
}

fn validate(file: FileConfig) -> Result<Config, ConfigError> {
    let listen_text = file.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        ConfigError::invalid(
            "listen",
            format!("{listen_text:?} is not an address like \"127.0.0.1:8080\""),
        )
    })?;
    let ops_listen = match file.ops_listen.filter(|t| !t.trim().is_empty()) {
        None => None,
        Some(text) => {
            let addr: SocketAddr = text.parse().map_err(|_| {
                ConfigError::invalid(
                    "ops_listen",
                    format!("{text:?} is not an address like \"127.0.0.1:9090\""),
                )
            })?;
            if addr == listen && addr.port() != 0 {
                return Err(ConfigError::invalid(
                    "ops_listen",
                    "must differ from listen (leave it unset to serve everything on listen)",
                ));
            }
            Some(addr)
        }
    };

    let demo = file.storage.database_url.is_none();
    let mut generated = Vec::new();

    let mut secret = |key: &str, value: Option<Secret>| -> Result<Secret, ConfigError> {
        match value {
            Some(s) if s.0.trim().is_empty() => Err(ConfigError::invalid(key, "must not be empty")),
            Some(s) if s.0.trim().chars().count() < MIN_SECRET_LEN => Err(ConfigError::invalid(
                key,
                format!(
                    "must be at least {MIN_SECRET_LEN} characters (a short secret can be guessed)"
                ),
            )),
            Some(s) => Ok(s),
            None if demo => {
                let v = random_token();
                generated.push((key.to_owned(), v.clone()));
                Ok(Secret(v))
            }
            None => Err(ConfigError::invalid(
                key,
                "is required when storage.database_url (DATABASE_URL) is set",
            )),
        }
    };
    let app_secret = secret("whatsapp.app_secret", file.whatsapp.app_secret)?;
    let verify_token = secret("whatsapp.verify_token", file.whatsapp.verify_token)?;
    let admin_token = match file.admin.token {
        Some(t) if t.0.trim().chars().count() < MIN_SECRET_LEN => {
            return Err(ConfigError::invalid(
                "admin.token",
                format!("must be at least {MIN_SECRET_LEN} characters, not counting spaces"),
            ));
        }
        Some(t) => Some(t),
        None if demo => Some(secret("admin.token", None)?),
        None => None,
    };

    let graph_api_url = file
        .whatsapp
        .graph_api_url
        .unwrap_or_else(|| DEFAULT_GRAPH_API_URL.to_owned());
    check_url("whatsapp.graph_api_url", &graph_api_url)?;
    if !graph_api_url.starts_with("https://") && !is_loopback_url(&graph_api_url) {
        return Err(ConfigError::invalid(
            "whatsapp.graph_api_url",
            format!(
                "{:?} must be https:// (the access token and users' messages travel on it); \
                 http:// is accepted only for a loopback host",
                steadfast_service_registry::Endpoint::redact(&graph_api_url)
            ),
        ));
    }
    let graph_api_url = graph_api_url.trim_end_matches('/').to_owned();
    let graph_timeout = positive_ms(
        "whatsapp.graph_timeout_ms",
        file.whatsapp.graph_timeout_ms,
        10_000,
    )?;

    let mut services = Vec::new();
    let mut echo_services = Vec::new();
    for (i, s) in file.services.unwrap_or_default().into_iter().enumerate() {
        let at = |field: &str| format!("services[{i}].{field}");
        let name = s.name.trim().to_owned();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::invalid(
                at("name"),
                format!("{:?} must be non-empty letters, digits, '-' or '_'", s.name),
            ));
        }
        if services.iter().any(|o: &ServiceConfig| o.name == name) {
            return Err(ConfigError::invalid(
                at("name"),
                format!("{name:?} is defined twice"),
            ));
        }
        if s.endpoints.is_empty() {
            if demo {
                echo_services.push(name.clone());
            } else {
                return Err(ConfigError::invalid(
                    at("endpoints"),
                    "needs at least one URL (or set DOWNSTREAM_URL / SERVICE_<NAME>_ENDPOINTS)",
                ));
            }
        }
        for (j, e) in s.endpoints.iter().enumerate() {
            check_url(&format!("services[{i}].endpoints[{j}]"), e)?;
        }
        let mut keywords = Vec::new();
        for (j, k) in s.keywords.iter().enumerate() {
            let k = crate::routing::normalize(k);
            if k.is_empty() {
                return Err(ConfigError::invalid(
                    format!("services[{i}].keywords[{j}]"),
                    "must contain a letter or digit",
                ));
            }
            keywords.push(k);
        }
        let breaker = match s.breaker {
            None => BreakerSpec::Standard,
            Some(FileBreaker::Preset(p)) => match p.as_str() {
                "standard" => BreakerSpec::Standard,
                "ai_agent" | "ai-agent" => BreakerSpec::AiAgent,
                other => {
                    return Err(ConfigError::invalid(
                        at("breaker"),
                        format!(
                            "unknown preset {other:?}: use \"standard\", \"ai_agent\" or an inline table"
                        ),
                    ));
                }
            },
            Some(FileBreaker::Custom(c)) => {
                if !(c.failure_rate_percent > 0.0 && c.failure_rate_percent <= 100.0) {
                    return Err(ConfigError::invalid(
                        at("breaker.failure_rate_percent"),
                        "must be in (0, 100]",
                    ));
                }
                if c.open_seconds == 0 {
                    return Err(ConfigError::invalid(
                        at("breaker.open_seconds"),
                        "must be greater than 0",
                    ));
                }
                if c.window_size == 0 || c.minimum_calls == 0 {
                    return Err(ConfigError::invalid(
                        at("breaker.window_size"),
                        "window_size and minimum_calls must be greater than 0",
                    ));
                }
                BreakerSpec::Custom(c)
            }
        };
        let default_timeout = if breaker == BreakerSpec::AiAgent {
            30_000
        } else {
            5_000
        };
        let timeout = positive_ms(&at("timeout_ms"), s.timeout_ms, default_timeout)?;
        services.push(ServiceConfig {
            name,
            endpoints: s.endpoints,
            keywords,
            breaker,
            timeout,
            fallback_reply: s.fallback_reply,
        });
    }
    if services.is_empty() {
        return Err(ConfigError::invalid(
            "services",
            "at least one [[services]] entry is required",
        ));
    }
    let default_service = match file.routing.default_service {
        Some(d) => d,
        None => services[services.len() - 1].name.clone(),
    };
    if !services.iter().any(|s| s.name == default_service) {
        return Err(ConfigError::invalid(
            "routing.default_service",
            format!("{default_service:?} is not the name of a [[services]] entry"),
        ));
    }

    let fallback_reply = match file.routing.fallback_reply {
        Some(t) if t.trim().is_empty() => None,
        Some(t) => Some(t),
        None => Some(DEFAULT_FALLBACK_REPLY.to_owned()),
    };

    let body_limit_bytes = file.http.body_limit_bytes.unwrap_or(DEFAULT_BODY_LIMIT);
    if body_limit_bytes < 1024 {
        return Err(ConfigError::invalid(
            "http.body_limit_bytes",
            "must be at least 1024 (Meta sends up to 3 MB)",
        ));
    }
    let trust_forwarded_for = file.http.trust_forwarded_for.unwrap_or(false);
    let trusted_proxy_hops = match (trust_forwarded_for, file.http.trusted_proxy_hops) {
        (false, Some(_)) => {
            return Err(ConfigError::invalid(
                "http.trusted_proxy_hops",
                "has no effect unless http.trust_forwarded_for = true",
            ));
        }
        (true, Some(0)) => {
            return Err(ConfigError::invalid(
                "http.trusted_proxy_hops",
                "must be at least 1 (the proxy in front of this service)",
            ));
        }
        (_, Some(n)) => n,
        (_, None) => 1,
    };
    let max_connections = file.http.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        return Err(ConfigError::invalid(
            "http.max_connections",
            "must be greater than 0",
        ));
    }
    let max_messages_per_delivery = file
        .http
        .max_messages_per_delivery
        .unwrap_or(DEFAULT_MAX_MESSAGES_PER_DELIVERY);
    if max_messages_per_delivery == 0 {
        return Err(ConfigError::invalid(
            "http.max_messages_per_delivery",
            "must be greater than 0 (Meta sends up to 1000 per delivery)",
        ));
    }
    let mut http = HttpConfig {
        body_limit_bytes,
        request_timeout: positive_ms(
            "http.request_timeout_ms",
            file.http.request_timeout_ms,
            10_000,
        )?,
        trust_forwarded_for,
        trusted_proxy_hops,
        shutdown_grace: positive_ms(
            "http.shutdown_grace_ms",
            file.http.shutdown_grace_ms,
            10_000,
        )?,
        max_connections,
        header_read_timeout: positive_ms(
            "http.header_read_timeout_ms",
            file.http.header_read_timeout_ms,
            DEFAULT_HEADER_READ_TIMEOUT.as_millis() as u64,
        )?,
        keep_alive_timeout: positive_ms(
            "http.keep_alive_timeout_ms",
            file.http.keep_alive_timeout_ms,
            DEFAULT_KEEP_ALIVE_TIMEOUT.as_millis() as u64,
        )?,
        max_messages_per_delivery,
        // Filled in below, once the dedup window is known (its default).
        max_delivery_age: Duration::ZERO,
    };

    let per_minute = file
        .rate_limit
        .per_minute
        .unwrap_or(DEFAULT_RATE_PER_MINUTE);
    let burst = file.rate_limit.burst.unwrap_or(per_minute);
    if per_minute > 0 && burst == 0 {
        return Err(ConfigError::invalid(
            "rate_limit.burst",
            "must be greater than 0 when the limit is on",
        ));
    }

    if file.storage.redis_url.is_some() && demo {
        return Err(ConfigError::invalid(
            "storage.redis_url",
            "is set without storage.database_url (DATABASE_URL): the Redis de-duplication fast path \
             only makes sense in front of the Postgres queue",
        ));
    }
    if file.storage.database_url.as_ref().is_some_and(|url| {
        !(url.0.starts_with("postgres://") || url.0.starts_with("postgresql://"))
    }) {
        return Err(ConfigError::invalid(
            "storage.database_url",
            "must start with postgres:// or postgresql://",
        ));
    }
    if file
        .storage
        .redis_url
        .as_ref()
        .is_some_and(|url| !(url.0.starts_with("redis://") || url.0.starts_with("rediss://")))
    {
        return Err(ConfigError::invalid(
            "storage.redis_url",
            "must start with redis:// or rediss://",
        ));
    }
    let pool_size = file.storage.pool_size.unwrap_or(16);
    if pool_size == 0 {
        return Err(ConfigError::invalid(
            "storage.pool_size",
            "must be greater than 0",
        ));
    }
    let queue_name = file
        .storage
        .queue_name
        .unwrap_or_else(|| "whatsapp-inbound".to_owned());
    if queue_name.trim().is_empty() {
        return Err(ConfigError::invalid(
            "storage.queue_name",
            "must not be empty",
        ));
    }
    let storage = StorageConfig {
        database_url: file.storage.database_url,
        redis_url: file.storage.redis_url,
        pool_size,
        dedup_window: Duration::from_secs(
            match file.storage.dedup_window_seconds.unwrap_or(7 * 24 * 3600) {
                0 => {
                    return Err(ConfigError::invalid(
                        "storage.dedup_window_seconds",
                        "must be greater than 0 (Meta retries for up to 7 days)",
                    ));
                }
                s => s,
            },
        ),
        queue_name,
        redis_prefix: file
            .storage
            .redis_prefix
            .unwrap_or_else(|| "steadfast:webhook:seen".to_owned()),
        store_timeout: positive_ms(
            "storage.store_timeout_ms",
            file.storage.store_timeout_ms,
            DEFAULT_STORE_TIMEOUT.as_millis() as u64,
        )?,
    };
    http.max_delivery_age = match file.http.max_delivery_age_seconds {
        Some(0) => {
            return Err(ConfigError::invalid(
                "http.max_delivery_age_seconds",
                "must be greater than 0",
            ));
        }
        Some(s) => Duration::from_secs(s),
        None => storage.dedup_window,
    };

    let w = file.worker;
    let concurrency = w.concurrency.unwrap_or(16);
    if concurrency == 0 {
        return Err(ConfigError::invalid(
            "worker.concurrency",
            "must be greater than 0",
        ));
    }
    let max_attempts = w.max_attempts.unwrap_or(3);
    if max_attempts == 0 {
        return Err(ConfigError::invalid(
            "worker.max_attempts",
            "must be at least 1",
        ));
    }
    let backoff_multiplier = w.backoff_multiplier.unwrap_or(2.0);
    if !(backoff_multiplier.is_finite() && backoff_multiplier >= 1.0) {
        return Err(ConfigError::invalid(
            "worker.backoff_multiplier",
            "must be a number >= 1.0",
        ));
    }
    let backoff_initial = positive_ms("worker.backoff_initial_ms", w.backoff_initial_ms, 1_000)?;
    let backoff_max = positive_ms("worker.backoff_max_ms", w.backoff_max_ms, 60_000)?;
    if backoff_max < backoff_initial {
        return Err(ConfigError::invalid(
            "worker.backoff_max_ms",
            "must not be smaller than worker.backoff_initial_ms",
        ));
    }
    let worker = WorkerConfig {
        enabled: w.enabled.unwrap_or(true),
        concurrency,
        max_attempts,
        backoff_initial,
        backoff_multiplier,
        backoff_max,
        poll_interval: positive_ms("worker.poll_interval_ms", w.poll_interval_ms, 200)?,
        lease: Duration::from_secs(match w.lease_seconds.unwrap_or(60) {
            0 => {
                return Err(ConfigError::invalid(
                    "worker.lease_seconds",
                    "must be greater than 0",
                ));
            }
            s => s,
        }),
        max_response_bytes: match w.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES) {
            n if n < 1024 => {
                return Err(ConfigError::invalid(
                    "worker.max_response_bytes",
                    "must be at least 1024",
                ));
            }
            n => n,
        },
        retry_horizon: match w.retry_horizon_seconds {
            None => DEFAULT_RETRY_HORIZON,
            Some(0) => {
                return Err(ConfigError::invalid(
                    "worker.retry_horizon_seconds",
                    "must be greater than 0",
                ));
            }
            Some(s) => Duration::from_secs(s),
        },
    };

    let c = file.conversation;
    let conversation = ConversationConfig {
        sweep_interval: Duration::from_secs(match c.sweep_interval_seconds.unwrap_or(30) {
            0 => {
                return Err(ConfigError::invalid(
                    "conversation.sweep_interval_seconds",
                    "must be greater than 0",
                ));
            }
            s => s,
        }),
        retention: match c
            .retention_days
            .unwrap_or(DEFAULT_CONVERSATION_RETENTION_DAYS)
        {
            0 => {
                return Err(ConfigError::invalid(
                    "conversation.retention_days",
                    "must be at least 1",
                ));
            }
            d => Duration::from_secs(d.saturating_mul(24 * 3600)),
        },
    };

    Ok(Config {
        listen,
        ops_listen,
        whatsapp: WhatsAppConfig {
            app_secret,
            verify_token,
            access_token: file.whatsapp.access_token,
            graph_api_url,
            graph_timeout,
        },
        admin_token,
        services,
        default_service,
        fallback_reply,
        http,
        rate_limit: RateLimitConfig { per_minute, burst },
        storage,
        worker,
        conversation,
        generated,
        echo_services,
        ingest_enabled: true,
    })
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

    fn load(toml: &str, e: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml(toml, &env(e), &Overrides::default())
    }

    #[test]
    fn empty_config_is_demo_with_generated_secrets_and_seed_routes() {
        let c = load("", &[]).unwrap();
        assert!(c.is_demo());
        let keys: Vec<_> = c.generated.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "whatsapp.app_secret",
                "whatsapp.verify_token",
                "admin.token"
            ]
        );
        assert_eq!(c.whatsapp.app_secret.expose(), c.generated[0].1);
        let names: Vec<_> = c.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["jobs", "property", "mobility", "marketplace", "ai-agent"]
        );
        assert_eq!(c.default_service, "ai-agent");
        assert_eq!(c.echo_services.len(), 5);
        assert_eq!(c.rate_limit.per_minute, 300);
        assert_eq!(c.http.body_limit_bytes, 4 * 1024 * 1024);
        assert_eq!(c.worker.max_attempts, 3);
        assert_eq!(c.conversation.sweep_interval, Duration::from_secs(30));
        assert!(c.fallback_reply.is_some());
    }

    #[test]
    fn the_issue_example_parses() {
        let toml = r#"
            listen = "127.0.0.1:8080"
            [whatsapp]
            app_secret = "s3cret-s3cret-s3cret"
            verify_token = "verify-token-0123"
            access_token = "at"
            graph_api_url = "https://graph.facebook.com/v21.0"
            [admin]
            token = "0123456789abcdef"
            [[services]]
            name = "jobs"
            endpoints = ["http://127.0.0.1:9001/handle"]
            keywords = ["job", "jobs"]
            breaker = "standard"
            [[services]]
            name = "ai-agent"
            endpoints = ["http://127.0.0.1:9002/handle"]
            breaker = { failure_rate_percent = 60.0, open_seconds = 120 }
            [routing]
            default_service = "ai-agent"
        "#;
        let c = load(toml, &[("DATABASE_URL", "postgres://localhost/x")]).unwrap();
        assert!(!c.is_demo());
        assert!(c.generated.is_empty());
        assert_eq!(c.services.len(), 2);
        assert_eq!(
            c.services[1].breaker,
            BreakerSpec::Custom(CustomBreaker {
                failure_rate_percent: 60.0,
                open_seconds: 120,
                window_size: 20,
                minimum_calls: 5
            })
        );
        assert_eq!(c.whatsapp.access_token.as_ref().unwrap().expose(), "at");
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let c = Config::from_toml(
            "listen = \"127.0.0.1:1\"\n[whatsapp]\napp_secret = \"file-secret-0123456789\"",
            &env(&[
                ("LISTEN_ADDR", "127.0.0.1:2"),
                ("WHATSAPP_APP_SECRET", "env-secret-0123456789"),
                ("RATE_LIMIT_PER_MINUTE", "10"),
            ]),
            &Overrides {
                listen: Some("127.0.0.1:3".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.listen.port(), 3);
        assert_eq!(c.whatsapp.app_secret.expose(), "env-secret-0123456789");
        assert_eq!(c.rate_limit.per_minute, 10);
    }

    #[test]
    fn downstream_url_points_every_service_and_per_service_env_wins() {
        let c = load(
            "",
            &[
                ("DOWNSTREAM_URL", "http://127.0.0.1:9000/"),
                (
                    "SERVICE_AI_AGENT_ENDPOINTS",
                    "http://127.0.0.1:9100/a, http://127.0.0.1:9101/a",
                ),
            ],
        )
        .unwrap();
        assert_eq!(c.services[0].endpoints, ["http://127.0.0.1:9000/jobs"]);
        assert_eq!(
            c.services[4].endpoints,
            ["http://127.0.0.1:9100/a", "http://127.0.0.1:9101/a"]
        );
        assert!(c.echo_services.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            ("listen = \"nope\"", &[], "listen"),
            (
                "",
                &[("DATABASE_URL", "postgres://x/y")],
                "whatsapp.app_secret",
            ),
            (
                "[[services]]\nname = \"a\"\nendpoints = [\"ftp://x\"]",
                &[],
                "services[0].endpoints[0]",
            ),
            (
                "[[services]]\nname = \"a\"\nbreaker = \"weird\"",
                &[],
                "services[0].breaker",
            ),
            (
                "[[services]]\nname = \"a\"\n[routing]\ndefault_service = \"b\"",
                &[],
                "routing.default_service",
            ),
            ("[worker]\nmax_attempts = 0", &[], "worker.max_attempts"),
            ("", &[("REDIS_URL", "redis://x")], "storage.redis_url"),
            (
                "",
                &[("RATE_LIMIT_PER_MINUTE", "lots")],
                "rate_limit.per_minute (env RATE_LIMIT_PER_MINUTE)",
            ),
            ("[admin]\ntoken = \"short\"", &[], "admin.token"),
            (
                "[admin]\ntoken = \"      short          \"",
                &[],
                "admin.token",
            ),
            (
                "[whatsapp]\napp_secret = \"fifteen-chars15\"",
                &[],
                "whatsapp.app_secret",
            ),
            (
                "[whatsapp]\nverify_token = \"   \"",
                &[],
                "whatsapp.verify_token",
            ),
            (
                "[whatsapp]\ngraph_api_url = \"http://graph.example.com/v21.0\"",
                &[],
                "whatsapp.graph_api_url",
            ),
            ("ops_listen = \"nope\"", &[], "ops_listen"),
            (
                "listen = \"127.0.0.1:8080\"\nops_listen = \"127.0.0.1:8080\"",
                &[],
                "ops_listen",
            ),
            (
                "[http]\ntrusted_proxy_hops = 2",
                &[],
                "http.trusted_proxy_hops",
            ),
            (
                "[http]\ntrust_forwarded_for = true\ntrusted_proxy_hops = 0",
                &[],
                "http.trusted_proxy_hops",
            ),
            ("[http]\nmax_connections = 0", &[], "http.max_connections"),
            (
                "[http]\nheader_read_timeout_ms = 0",
                &[],
                "http.header_read_timeout_ms",
            ),
            (
                "[http]\nmax_messages_per_delivery = 0",
                &[],
                "http.max_messages_per_delivery",
            ),
            (
                "[http]\nmax_delivery_age_seconds = 0",
                &[],
                "http.max_delivery_age_seconds",
            ),
            (
                "[worker]\nmax_response_bytes = 10",
                &[],
                "worker.max_response_bytes",
            ),
            (
                "[storage]\nstore_timeout_ms = 0",
                &[],
                "storage.store_timeout_ms",
            ),
            (
                "[worker]\nretry_horizon_seconds = 0",
                &[],
                "worker.retry_horizon_seconds",
            ),
            (
                "[conversation]\nretention_days = 0",
                &[],
                "conversation.retention_days",
            ),
        ];
        for (toml, e, key) in cases {
            let err = load(toml, e).unwrap_err();
            assert_eq!(err.key(), Some(*key), "{toml:?}: {err}");
            assert!(err.to_string().contains(key));
        }
    }

    #[test]
    fn hardening_defaults_and_keys() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.ops_listen, None);
        assert_eq!(c.http.max_connections, 10_000);
        assert_eq!(c.http.header_read_timeout, Duration::from_secs(5));
        assert_eq!(c.http.max_messages_per_delivery, 1000);
        assert_eq!(c.http.max_delivery_age, c.storage.dedup_window);
        assert!(!c.http.trust_forwarded_for);
        assert_eq!(c.worker.max_response_bytes, 64 * 1024);
        assert_eq!(c.storage.store_timeout, Duration::from_secs(5));
        assert_eq!(c.worker.retry_horizon, Duration::from_secs(3600));
        assert_eq!(
            c.conversation.retention,
            Duration::from_secs(30 * 24 * 3600)
        );

        let c = load(
            "ops_listen = \"127.0.0.1:9090\"\n[http]\ntrust_forwarded_for = true\n\
             trusted_proxy_hops = 2\nmax_delivery_age_seconds = 60\n\
             [whatsapp]\ngraph_api_url = \"http://[::1]:9000/v21.0\"",
            &[],
        )
        .unwrap();
        assert_eq!(c.ops_listen, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(c.http.trusted_proxy_hops, 2);
        assert_eq!(c.http.max_delivery_age, Duration::from_secs(60));
        let c = load(
            "[http]\ntrust_forwarded_for = true\n[whatsapp]\n\
             graph_api_url = \"http://localhost:9000\"",
            &[("OPS_LISTEN_ADDR", "127.0.0.1:9091")],
        )
        .unwrap();
        assert_eq!(c.http.trusted_proxy_hops, 1);
        assert_eq!(c.ops_listen.unwrap().port(), 9091);
    }

    #[test]
    fn a_bad_url_is_named_without_its_credentials() {
        let err = load(
            "[[services]]\nname = \"a\"\nendpoints = [\"ftp://bot:hunter2hunter2@h/x\"]",
            &[],
        )
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = load(
            "[whatsapp]\ngraph_api_url = \"http://u:hunter2hunter2@graph.example.com\"",
            &[],
        )
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = load("[whatsapp]\napp_secrt = \"x\"", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(err.to_string().contains("app_secrt"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = load("[whatsapp]\napp_secret = \"hunter2hunter2hunter2\"", &[]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"));
    }
}
