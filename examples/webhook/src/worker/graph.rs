//! Replies to users through the WhatsApp Graph API, behind the `whatsapp-graph-api` breaker.

use std::time::Duration;

use serde_json::json;
use steadfast_circuit_breaker::{CallError, CircuitBreaker, Outcome};

use crate::config::Secret;
use crate::mask::Masked;

/// The breaker's name.
pub const BREAKER: &str = "whatsapp-graph-api";

/// Why a reply was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying (5xx, 429, timeout, transport, breaker open).
    #[error("{kind}: {message}")]
    Retryable {
        /// Error class (`graph_http_503`, `graph_breaker_open`, ...).
        kind: String,
        /// What happened.
        message: String,
        /// When to try again, if known.
        retry_after: Option<Duration>,
    },
    /// Refused by the Graph API (4xx: bad recipient, expired token...).
    #[error("Graph API refused the reply with HTTP {status}")]
    Refused {
        /// The status.
        status: u16,
    },
}

/// Sends text replies (or logs them, in demo mode).
#[derive(Clone)]
pub struct GraphClient {
    client: reqwest::Client,
    base_url: String,
    token: Option<Secret>,
    timeout: Duration,
    breaker: CircuitBreaker,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base_url", &self.base_url)
            .field("sends", &self.token.is_some())
            .finish()
    }
}

enum Sent {
    Ok,
    Refused(u16),
    Failed(u16, Option<Duration>),
}

impl GraphClient {
    /// A client for `base_url` (e.g. `https://graph.facebook.com/v21.0`); without a token,
    /// replies are logged instead of sent.
    pub fn new(
        client: reqwest::Client,
        base_url: String,
        token: Option<Secret>,
        timeout: Duration,
        breaker: CircuitBreaker,
    ) -> Self {
        Self {
            client,
            base_url,
            token,
            timeout,
            breaker,
        }
    }

    /// The breaker guarding the Graph API.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Sends `text` to `to` from our number `phone_number_id`.
    pub async fn send_text(
        &self,
        phone_number_id: &str,
        to: &str,
        text: &str,
    ) -> Result<(), SendError> {
        let Some(token) = &self.token else {
            // Demo mode: there is no real user to reach, so the reply is shown in the log.
            tracing::info!(to = %Masked(to), demo_reply = %text, "reply (demo mode: logged, not sent)");
            metrics::counter!(crate::metrics::OUTBOUND_REPLIES, "outcome" => "logged").increment(1);
            return Ok(());
        };
        let url = format!("{}/{}/messages", self.base_url, phone_number_id);
        let body = json!({
            "messaging_product": "whatsapp",
            "to": to,
            "type": "text",
            "text": {"body": text},
        });
        let request = self
            .client
            .post(url)
            .bearer_auth(token.expose())
            .timeout(self.timeout)
            .json(&body);
        // A 4xx is about this reply, not the Graph API's health: the breaker ignores it.
        let classify = |r: &Result<Sent, reqwest::Error>| match r {
            Ok(Sent::Ok) => Outcome::Success,
            Ok(Sent::Refused(_)) => Outcome::Ignore,
            Ok(Sent::Failed(..)) | Err(_) => Outcome::Failure,
        };
        let result = self
            .breaker
            .call_with(&classify, || async move {
                let res = request.send().await?;
                let status = res.status();
                Ok(if status.is_success() {
                    Sent::Ok
                } else if status.is_server_error() || status.as_u16() == 429 {
                    let after = res
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    Sent::Failed(status.as_u16(), after)
                } else {
                    Sent::Refused(status.as_u16())
                })
            })
            .await;
        let (outcome, ret) = match result {
            Ok(Sent::Ok) => ("sent", Ok(())),
            Ok(Sent::Refused(status)) => ("rejected", Err(SendError::Refused { status })),
            Ok(Sent::Failed(status, retry_after)) => (
                "failed",
                Err(SendError::Retryable {
                    kind: format!("graph_http_{status}"),
                    message: format!("Graph API answered HTTP {status}"),
                    retry_after,
                }),
            ),
            Err(CallError::Rejected(r)) => (
                "breaker_open",
                Err(SendError::Retryable {
                    kind: "graph_breaker_open".into(),
                    message: format!("{BREAKER} breaker is {}", r.state.as_str()),
                    retry_after: r.retry_after,
                }),
            ),
            Err(CallError::Timeout) => (
                "failed",
                Err(SendError::Retryable {
                    kind: "graph_timeout".into(),
                    message: "Graph API call timed out".into(),
                    retry_after: None,
                }),
            ),
            Err(CallError::Inner(e)) => (
                "failed",
                Err(SendError::Retryable {
                    kind: if e.is_timeout() {
                        "graph_timeout".into()
                    } else {
                        "graph_transport".into()
                    },
                    message: e.without_url().to_string(),
                    retry_after: None,
                }),
            ),
        };
        metrics::counter!(crate::metrics::OUTBOUND_REPLIES, "outcome" => outcome).increment(1);
        ret
    }
}
