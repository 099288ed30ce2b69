//! Shared helpers of the integration tests.
#![allow(dead_code, missing_docs)]

pub mod fakes;
pub mod proxy;
pub mod surface;

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use steadfast_testkit::SqliteFile;
use steadfast_webhook::assemble::App;
use steadfast_webhook::config::{Config, Overrides, RawConfig};
use steadfast_webhook::signature::Verifier;
use tower::ServiceExt;

pub const SECRET: &str = "test-app-secret-0123456789";
pub const VERIFY_TOKEN: &str = "test-verify-token";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A fixture's bytes, with every `"timestamp"` moved to the present (keeping the fixture's
/// spacing between timestamps): the service ignores deliveries whose items are all older than
/// its delivery age limit (7 days), and the fixtures were captured long ago. The rewrite is
/// textual so that the rest of the bytes (escapes, spacing) stay exactly as captured.
pub fn fixture(name: &str) -> Vec<u8> {
    let raw = std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    freshen_timestamps(&raw)
}

/// The fixtures' epoch: their earliest timestamp (2025-11-21T16:00:00Z).
const FIXTURE_EPOCH: i64 = 1_763_740_800;

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Shifts each `"timestamp": "<digits>"` by (now - one hour - [`FIXTURE_EPOCH`]).
pub fn freshen_timestamps(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(raw.to_vec()).expect("fixtures are UTF-8");
    let shift = now_unix() - 3600 - FIXTURE_EPOCH;
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("\"timestamp\"") {
        let (head, tail) = rest.split_at(at + "\"timestamp\"".len());
        out.push_str(head);
        // `: "` with any spacing, then digits, then `"`.
        let after_colon = tail.trim_start().strip_prefix(':').map(str::trim_start);
        let digits = after_colon.and_then(|t| t.strip_prefix('"')).map(|t| {
            let n = t.bytes().take_while(u8::is_ascii_digit).count();
            (&t[..n], &t[n..])
        });
        match digits {
            Some((d, after)) if !d.is_empty() && after.starts_with('"') => {
                let consumed = tail.len() - after.len() - d.len() - 1;
                out.push_str(&tail[..consumed]);
                let t: i64 = d.parse().unwrap();
                out.push('"');
                out.push_str(&(t + shift).to_string());
                rest = after;
            }
            _ => rest = tail,
        }
    }
    out.push_str(rest);
    out.into_bytes()
}

/// Polls `check` every 20 ms until it holds (20 s at most): waiting for the worker, not timing
/// it.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub fn sign(body: &[u8]) -> String {
    Verifier::new(SECRET.as_bytes()).sign(body)
}

/// A demo-mode (in-memory) config with known secrets and `extra` TOML appended.
pub fn memory_config(extra: &str) -> Config {
    config_on(&Store::Memory, extra)
}

/// The stores a test's service runs on without servers.
#[derive(Debug)]
pub enum Store {
    /// `storage.backend = "memory"`.
    Memory,
    /// `storage.backend = "sqlite"` on this test's own file.
    Sqlite(SqliteFile),
}

impl Store {
    /// A fresh SQLite file (removed when the value is dropped).
    pub fn sqlite() -> Self {
        Store::Sqlite(SqliteFile::new())
    }
}

/// A config on `store` with known secrets and `extra` TOML appended (which may have a
/// `[storage]` table of its own: the backend is set after parsing).
pub fn config_on(store: &Store, extra: &str) -> Config {
    let toml = format!(
        "[whatsapp]\napp_secret = \"{SECRET}\"\nverify_token = \"{VERIFY_TOKEN}\"\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n{extra}"
    );
    let mut raw = RawConfig::parse(&toml, "<test>").unwrap();
    match store {
        Store::Memory => raw.storage.backend = Some("memory".into()),
        Store::Sqlite(file) => {
            raw.storage.backend = Some("sqlite".into());
            raw.storage.sqlite_path = Some(file.path().to_owned());
        }
    }
    Config::from_raw(raw, &HashMap::new(), &Overrides::default()).unwrap()
}

/// A built service on `store`; the SQLite file lives as long as the value.
pub struct TestApp {
    pub app: App,
    /// Dropped after `app` (fields drop in order), so the file outlives its pool.
    pub store: Store,
}

impl TestApp {
    pub async fn build(store: Store, extra: &str) -> Self {
        let app = App::build(config_on(&store, extra)).await.unwrap();
        TestApp { app, store }
    }
}

impl std::ops::Deref for TestApp {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

/// Runs each named `async fn(Store)` of the calling file as a test on the in-memory stores
/// (module `memory`) and on a temp-file SQLite database (module `sqlite`).
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::common::Store::Memory).await
            })*
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::common::Store::sqlite()).await
            })*
        }
    };
}

pub async fn send(router: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let res: Response<Body> = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, bytes)
}

pub fn post_webhook(body: &[u8], signature: Option<&str>) -> Request<Body> {
    let mut b = Request::post("/webhook").header("content-type", "application/json");
    if let Some(s) = signature {
        b = b.header("x-hub-signature-256", s);
    }
    b.body(Body::from(body.to_vec())).unwrap()
}

pub fn signed(body: &[u8]) -> Request<Body> {
    post_webhook(body, Some(&sign(body)))
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

/// A delivery of `n` text messages with ids `wamid.<prefix>.<i>`, from 10 senders in turn.
pub fn text_batch(prefix: &str, n: usize, text: &str) -> Vec<u8> {
    let messages: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "from": format!("25078812345{}", i % 10),
                "id": format!("wamid.{prefix}.{i}"),
                "timestamp": (now_unix() - 60).to_string(),
                "type": "text",
                "text": {"body": text}
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "310987654321098", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "250780000100", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Test"}, "wa_id": "250788123456"}],
            "messages": messages
        }}]}]
    }))
    .unwrap()
}
