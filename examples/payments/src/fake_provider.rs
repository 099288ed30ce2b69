//! The built-in fake mobile-money provider of demo mode (and of the tests and the drill).
//!
//! It serves `POST /disbursements` on its own loopback listener, as the real provider API
//! would: the bearer key is checked, `X-Reference-Id` is the idempotency key (a repeated
//! request is accepted again, calls back once). It accepts every payout and, after a short
//! delay, calls the service's `/momo/callback` signed with the callback secret, from
//! 127.0.0.1: SUCCESSFUL, or FAILED for an msisdn ending in `1111`; an msisdn ending in
//! `0000` is refused (400). Like a real provider it retries its callback until it gets a 200.
//!
//! For tests and drills it can answer scripted statuses first ([`FakeProvider::script`]), or
//! be down (503) until told otherwise ([`FakeProvider::set_down`], also
//! `PUT /control/outage` with body `on` / `off`). `GET /control/stats` counts requests,
//! accepted payouts and delivered callbacks (the drill's "0 lost callbacks").

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::signature::Signer;

/// Attempts the fake makes to deliver one callback, one second apart.
pub const CALLBACK_ATTEMPTS: u32 = 120;

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// `X-Reference-Id`.
    pub reference_id: Option<String>,
    /// Whether the bearer key was right.
    pub authorized: bool,
    /// The JSON body.
    pub body: serde_json::Value,
    /// What the fake answered.
    pub status: u16,
    /// The W3C `traceparent` the caller sent, if any (the service sends one when it exports
    /// traces).
    pub traceparent: Option<String>,
}

struct Inner {
    api_key: String,
    signer: Signer,
    callback_url: Mutex<Option<String>>,
    delay: Duration,
    script: Mutex<VecDeque<u16>>,
    down: AtomicBool,
    requests: Mutex<Vec<Recorded>>,
    accepted: Mutex<HashSet<String>>,
    callbacks_delivered: AtomicU64,
    http: reqwest::Client,
}

/// The fake provider. Cheap to clone.
#[derive(Clone)]
pub struct FakeProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("delay", &self.inner.delay)
            .finish_non_exhaustive()
    }
}

impl FakeProvider {
    /// A fake that expects `api_key` and signs callbacks with `callback_secret`, calling back
    /// `delay` after accepting.
    pub fn new(api_key: &str, callback_secret: &str, delay: Duration) -> Self {
        FakeProvider {
            inner: Arc::new(Inner {
                api_key: api_key.to_owned(),
                signer: Signer::new(callback_secret.as_bytes()),
                callback_url: Mutex::new(None),
                delay,
                script: Mutex::new(VecDeque::new()),
                down: AtomicBool::new(false),
                requests: Mutex::new(Vec::new()),
                accepted: Mutex::new(HashSet::new()),
                callbacks_delivered: AtomicU64::new(0),
                http: reqwest::Client::new(),
            }),
        }
    }

    /// Where callbacks go (`http://127.0.0.1:8081/momo/callback`).
    pub fn set_callback_url(&self, url: impl Into<String>) {
        *self.inner.callback_url.lock() = Some(url.into());
    }

    /// Answer these statuses to the next requests, in order, before behaving normally.
    pub fn script(&self, statuses: impl IntoIterator<Item = u16>) {
        self.inner.script.lock().extend(statuses);
    }

    /// Down (every request 503) or up.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().clone()
    }

    /// Callbacks delivered (answered 200).
    pub fn callbacks_delivered(&self) -> u64 {
        self.inner.callbacks_delivered.load(Ordering::SeqCst)
    }

    /// The fake's routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/disbursements", post(disburse))
            .route("/control/outage", put(outage))
            .route("/control/stats", get(stats))
            .with_state(self.clone())
    }

    /// Serves the fake on `listener` on a spawned task.
    pub fn spawn(&self, listener: TcpListener) -> tokio::task::JoinHandle<()> {
        let router = self.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "fake provider stopped");
            }
        })
    }

    fn answer(&self, headers: &HeaderMap, body: &Bytes) -> (u16, Option<(String, String)>) {
        let authorized = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|k| k == self.inner.api_key);
        let reference = headers
            .get("x-reference-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let scripted = self.inner.script.lock().pop_front();
        let msisdn = json["msisdn"].as_str().unwrap_or_default().to_owned();
        let status = if !authorized {
            401
        } else if let Some(s) = scripted {
            s
        } else if self.inner.down.load(Ordering::SeqCst) {
            503
        } else if reference.is_none()
            || json["externalId"].as_str() != reference.as_deref()
            || msisdn.ends_with("0000")
        {
            400
        } else {
            202
        };
        self.inner.requests.lock().push(Recorded {
            reference_id: reference.clone(),
            authorized,
            body: json.clone(),
            status,
            traceparent: headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
        if status != 202 {
            return (status, None);
        }
        let reference = reference.unwrap_or_default();
        if !self.inner.accepted.lock().insert(reference.clone()) {
            return (status, None); // a repeat: accepted again, called back once
        }
        let result = if msisdn.ends_with("1111") {
            "FAILED"
        } else {
            "SUCCESSFUL"
        };
        let callback = serde_json::json!({
            "transactionId": format!("fake-{reference}"),
            "externalId": reference,
            "type": "disbursement",
            "amount": json["amount"],
            "currency": json["currency"],
            "status": result,
        });
        (status, Some((reference, callback.to_string())))
    }

    async fn call_back(self, body: String) {
        tokio::time::sleep(self.inner.delay).await;
        let signature = self.inner.signer.sign(body.as_bytes());
        for _ in 0..CALLBACK_ATTEMPTS {
            let url = self.inner.callback_url.lock().clone();
            if let Some(url) = url {
                let sent = self
                    .inner
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-signature", &signature)
                    .body(body.clone())
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status().is_success()) {
                    self.inner
                        .callbacks_delivered
                        .fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tracing::error!("fake provider gave up delivering a callback");
    }
}

async fn disburse(State(fake): State<FakeProvider>, headers: HeaderMap, body: Bytes) -> Response {
    let (status, callback) = fake.answer(&headers, &body);
    if let Some((_, body)) = callback {
        tokio::spawn(fake.clone().call_back(body));
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(serde_json::json!({"status": status}))).into_response()
}

async fn stats(State(fake): State<FakeProvider>) -> axum::Json<serde_json::Value> {
    let requests = fake.requests();
    axum::Json(serde_json::json!({
        "requests": requests.len(),
        "accepted": fake.inner.accepted.lock().len(),
        "callbacks_delivered": fake.callbacks_delivered(),
    }))
}

async fn outage(State(fake): State<FakeProvider>, body: Bytes) -> StatusCode {
    match body.as_ref() {
        b"on" => fake.set_down(true),
        b"off" => fake.set_down(false),
        _ => return StatusCode::BAD_REQUEST,
    }
    StatusCode::NO_CONTENT
}
