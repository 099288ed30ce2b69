//! Shared helpers of the integration tests: a service on a real loopback listener, on memory,
//! on a SQLite file or on a Postgres schema of its own, with a fake provider the test controls.
#![allow(dead_code, missing_docs)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use steadfast_payments::assemble::{App, Options, Running};
use steadfast_payments::config::{Config, Overrides, RawConfig};
use steadfast_payments::fake_provider::FakeProvider;
use steadfast_payments::payout::PayoutTuning;
use steadfast_payments::signature::Signer;
use steadfast_retry::RetryPolicy;
use steadfast_testkit::{PgSchema, SqliteFile};
use tokio::net::TcpListener;

pub const API_TOKEN: &str = "test-api-token-0123456789";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const SECRET: &str = "test-callback-secret-0123456789";
pub const API_KEY: &str = "test-momo-api-key";

/// Which stores a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    /// A temp-file SQLite database of the test's own.
    Sqlite,
    Postgres,
}

pub fn fast_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .exponential(Duration::from_millis(20), 2.0)
        .max_delay(Duration::from_millis(200))
        .max_attempts(u32::MAX)
        .max_elapsed(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Fast timings: these tests wait for outcomes, they never time them.
pub fn options() -> Options {
    Options {
        tuning: PayoutTuning {
            request_policy: fast_policy(),
            await_policy: fast_policy(),
            max_retry_after: Duration::from_millis(100),
            ..PayoutTuning::default()
        },
        saga_lease: Duration::from_secs(2),
        saga_poll: Duration::from_millis(100),
        worker_poll: Duration::from_millis(50),
        fake_provider_delay: Duration::from_millis(20),
        ..Options::default()
    }
}

pub struct Settings {
    pub allowed_ips: Vec<String>,
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allowed_ips: vec!["127.0.0.0/8".into()],
            per_minute: 6000,
            burst: 6000,
        }
    }
}

/// The config of a test service: `sqlite` is the file of [`Backend::Sqlite`]; Postgres tests
/// give the app a pool, which wins over the config.
pub fn config(provider_url: &str, s: &Settings, backend: Backend, sqlite: Option<&Path>) -> Config {
    let ips = s
        .allowed_ips
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"
listen = "127.0.0.1:0"
[api]
token = "{API_TOKEN}"
[admin]
token = "{ADMIN_TOKEN}"
[momo]
callback_secret = "{SECRET}"
allowed_ips = [{ips}]
api_url = "{provider_url}"
api_key = "{API_KEY}"
[rate_limit]
per_minute = {}
burst = {}
"#,
        s.per_minute, s.burst
    );
    let mut raw = RawConfig::parse(&text, "<test>").unwrap();
    match (backend, sqlite) {
        (Backend::Memory, _) => raw.storage.backend = Some("memory".into()),
        (Backend::Sqlite, Some(path)) => raw.storage.sqlite_path = Some(path.to_owned()),
        (Backend::Sqlite, None) => panic!("a SQLite test service needs its file"),
        (Backend::Postgres, _) => {}
    }
    Config::from_raw(raw, &HashMap::new(), &Overrides::default()).unwrap()
}

pub struct Harness {
    pub backend: Backend,
    pub base: String,
    pub http: reqwest::Client,
    pub fake: FakeProvider,
    pub provider_url: String,
    pub running: Option<Running>,
    pub schema: Option<Arc<PgSchema>>,
    /// The SQLite file of [`Backend::Sqlite`], removed when the last holder drops.
    pub sqlite: Option<Arc<SqliteFile>>,
    pub app_state: steadfast_payments::app::AppState,
}

/// The fake provider on its own listener, calling nobody back yet.
pub async fn fake_provider() -> (FakeProvider, String) {
    let fake = FakeProvider::new(API_KEY, SECRET, Duration::from_millis(20));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    fake.spawn(listener);
    (fake, url)
}

impl Harness {
    /// A service on `backend`, or `None` when Postgres is unreachable outside CI.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::with(backend, Settings::default()).await
    }

    pub async fn with(backend: Backend, settings: Settings) -> Option<Self> {
        let schema = match backend {
            Backend::Memory | Backend::Sqlite => None,
            Backend::Postgres => Some(Arc::new(steadfast_testkit::postgres().await?)),
        };
        let sqlite = (backend == Backend::Sqlite).then(|| Arc::new(SqliteFile::new()));
        let (fake, url) = fake_provider().await;
        let pool = schema.as_ref().map(|s| s.pool().clone());
        Some(
            Self::build(
                backend,
                schema,
                pool,
                sqlite,
                fake,
                url,
                &settings,
                options(),
            )
            .await,
        )
    }

    /// A service sharing `schema`, `fake` (a second instance, or a restarted one).
    pub async fn on(
        backend: Backend,
        schema: Option<Arc<PgSchema>>,
        fake: FakeProvider,
        provider_url: String,
        settings: &Settings,
        options: Options,
    ) -> Self {
        let pool = schema.as_ref().map(|s| s.pool().clone());
        Self::build(
            backend,
            schema,
            pool,
            None,
            fake,
            provider_url,
            settings,
            options,
        )
        .await
    }

    /// As [`Harness::on`], on a pool of its own opened on the current runtime: a "process"
    /// whose runtime is later dropped (a crash) must not leave its connections in the pool
    /// the next process uses (they would fail: "a Tokio 1.x context was found, but it is
    /// being shutdown").
    pub async fn on_own_pool(
        backend: Backend,
        schema: Arc<PgSchema>,
        fake: FakeProvider,
        provider_url: String,
        settings: &Settings,
        options: Options,
    ) -> Self {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect_with(schema.connect_options())
            .await
            .expect("a pool on the schema");
        let schema = Some(schema);
        Self::build(
            backend,
            schema,
            Some(pool),
            None,
            fake,
            provider_url,
            settings,
            options,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn build(
        backend: Backend,
        schema: Option<Arc<PgSchema>>,
        pool: Option<PgPool>,
        sqlite: Option<Arc<SqliteFile>>,
        fake: FakeProvider,
        provider_url: String,
        settings: &Settings,
        options: Options,
    ) -> Self {
        let config = config(
            &provider_url,
            settings,
            backend,
            sqlite.as_deref().map(SqliteFile::path),
        );
        let app = App::build(config, options, pool).await.expect("app builds");
        let app_state = app.state().clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = app.spawn(listener).unwrap();
        let base = format!("http://{}", running.addr);
        fake.set_callback_url(format!("{base}/momo/callback"));
        Harness {
            backend,
            base,
            http: reqwest::Client::new(),
            fake,
            provider_url,
            running: Some(running),
            schema,
            sqlite,
            app_state,
        }
    }

    pub fn pool(&self) -> Option<PgPool> {
        self.schema.as_ref().map(|s| s.pool().clone())
    }

    pub async fn create_account(&self, id: &str, currency: &str) {
        let res = self
            .http
            .post(format!("{}/admin/accounts", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"id": id, "currency": currency}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }

    pub async fn account(&self, id: &str) -> (u16, Value) {
        let res = self
            .http
            .get(format!("{}/v1/accounts/{id}", self.base))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn balance(&self, id: &str) -> (i64, i64) {
        let (status, body) = self.account(id).await;
        assert_eq!(status, 200, "{body}");
        (
            body["balance"].as_i64().unwrap(),
            body["available"].as_i64().unwrap(),
        )
    }

    /// Sends a signed callback from 127.0.0.1.
    pub async fn callback(&self, body: &Value) -> reqwest::Response {
        self.callback_raw(body.to_string().as_bytes(), true).await
    }

    pub async fn callback_raw(&self, body: &[u8], sign: bool) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/momo/callback", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if sign {
            req = req.header("x-signature", Signer::new(SECRET.as_bytes()).sign(body));
        }
        req.send().await.unwrap()
    }

    /// Credits `amount` to `account` through a collection callback and waits for the worker.
    pub async fn deposit(&self, account: &str, amount: i64, currency: &str) {
        let (before, _) = self.balance(account).await;
        let tx = format!("dep-{}", uuid::Uuid::new_v4().simple());
        let res = self
            .callback(&json!({
                "transactionId": tx, "externalId": account, "type": "collection",
                "amount": amount, "currency": currency, "status": "SUCCESSFUL"
            }))
            .await;
        assert_eq!(res.status(), 200);
        eventually("deposit credited", async || {
            self.balance(account).await.0 == before + amount
        })
        .await;
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Answer {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(API_TOKEN)
            .json(body);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        Answer::of(req.send().await.unwrap()).await
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let res = self
            .http
            .get(format!("{}/admin{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// The ledger invariant: balances = deposits − settled payouts, reserved = pending.
    pub async fn assert_invariant(&self) {
        let ledger = self.admin_get("/ledger").await;
        assert_eq!(ledger["invariant_holds"], true, "{ledger}");
    }

    /// Checks the invariant and stops the service.
    pub async fn finish(mut self) {
        self.assert_invariant().await;
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub async fn of(res: reqwest::Response) -> Self {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Polls `check` every 20 ms until it holds (30 s at most): waiting for the service, not
/// timing it.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..1500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub fn key() -> String {
    format!("key-{}", uuid::Uuid::new_v4().simple())
}
