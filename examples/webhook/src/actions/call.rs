//! The HTTP calls of one action type: `POST <url>` to run it, `DELETE <url>` to cancel what
//! its idempotency key created. Both send `Idempotency-Key: <saga id>:<step>` and
//! `X-Request-Id: <correlation id>`, follow no redirects (the worker's client), and read at
//! most `worker.max_response_bytes` of an answer.
//!
//! | answer | execute (`POST`) | compensate (`DELETE`) |
//! |---|---|---|
//! | 2xx | done; output = the JSON body (or `{}`) | done |
//! | 404, 410 | permanent | done (nothing to cancel) |
//! | 5xx, 429, timeout, transport | retryable (`Retry-After` honoured) | retryable |
//! | 3xx | permanent (not followed) | permanent |
//! | other 4xx | permanent | permanent (the saga parks for an operator) |

use std::time::Duration;

use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use steadfast_saga::StepError;

use super::ActionType;
use crate::worker::body::{self, BodyError};
use crate::worker::downstream::retry_after;

/// One action type's endpoint.
#[derive(Debug, Clone)]
pub struct ActionEndpoint {
    kind: ActionType,
    url: String,
    http: reqwest::Client,
    timeout: Duration,
    max_body: usize,
}

/// The body of the `POST`.
#[derive(Debug, Serialize)]
pub struct ActionRequest<'a> {
    /// The `wamid` whose reply asked for the action.
    pub message_id: &'a str,
    /// The user's WhatsApp id.
    pub from: &'a str,
    /// The downstream service that asked for it.
    pub service: &'a str,
    /// The action type.
    #[serde(rename = "type")]
    pub kind: ActionType,
    /// The action's `data`, as the downstream sent it.
    pub data: &'a Value,
}

impl ActionEndpoint {
    /// `kind`'s endpoint at `url`, called with `http` (no redirects), each call bounded by
    /// `timeout`, answers read up to `max_body` bytes.
    pub fn new(
        kind: ActionType,
        url: String,
        http: reqwest::Client,
        timeout: Duration,
        max_body: usize,
    ) -> Self {
        Self {
            kind,
            url,
            http,
            timeout,
            max_body,
        }
    }

    /// Runs the action: its output is the answer's JSON body, or `{}` when it has none (never
    /// `null`, which means "not asked for" to the compensation).
    pub async fn execute(
        &self,
        key: &str,
        request_id: &str,
        body: &ActionRequest<'_>,
    ) -> Result<Value, StepError> {
        let request = self.http.post(&self.url).json(body);
        let response = self.send(request, key, request_id).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.refused(status, &response));
        }
        Ok(match body::read_capped(response, self.max_body).await {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Null) | Err(_) => json!({}),
                Ok(v) => v,
            },
            // The action was taken: failing it now would cancel it for an oversized answer.
            Err(BodyError::TooLarge { limit }) => {
                tracing::warn!(action = %self.kind, limit, "action answer larger than the cap; recorded as {{}}");
                json!({})
            }
            Err(BodyError::Transport(m)) => {
                tracing::warn!(action = %self.kind, error = %m, "action answer cut off after 2xx; recorded as {{}}");
                json!({})
            }
        })
    }

    /// Cancels what `key` created. 404 and 410 are success: there is nothing (left) to cancel.
    pub async fn compensate(&self, key: &str, request_id: &str) -> Result<(), StepError> {
        let request = self.http.delete(&self.url);
        let response = self.send(request, key, request_id).await?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(());
        }
        Err(self.refused(status, &response))
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        key: &str,
        request_id: &str,
    ) -> Result<reqwest::Response, StepError> {
        let request = request
            .header("idempotency-key", key)
            .header("x-request-id", request_id)
            .timeout(self.timeout);
        crate::telemetry::client::send(request).await.map_err(|e| {
            if e.is_timeout() {
                StepError::retryable(format!(
                    "{} did not answer within {:?}",
                    self.kind, self.timeout
                ))
            } else {
                StepError::retryable(format!("{}: {}", self.kind, e.without_url()))
            }
        })
    }

    /// The error for a non-2xx answer.
    fn refused(&self, status: StatusCode, response: &reqwest::Response) -> StepError {
        let code = status.as_u16();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            let e = StepError::retryable(format!("{} answered HTTP {code}", self.kind));
            return match retry_after(response.headers()) {
                Some(after) => e.retry_after(after),
                None => e,
            };
        }
        if status.is_redirection() {
            return StepError::permanent(format!(
                "{} answered HTTP {code}; redirects are not followed",
                self.kind
            ));
        }
        StepError::permanent(format!("{} refused with HTTP {code}", self.kind))
    }
}
