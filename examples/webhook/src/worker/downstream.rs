//! The call to a downstream service through the service registry.
//!
//! Request: `POST <endpoint>` with `{message_id, from, type, text, conversation_state,
//! correlation_id, history}` and `Idempotency-Key: <wamid>`, so a downstream that sees the same
//! message twice (a retry after a lost reply) can answer it once. Response: `{"reply": "...",
//! "done": false, "actions": [...]}`; `reply` may be absent or null (nothing to send back),
//! `actions` is optional ([`crate::actions`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use steadfast_service_registry::{CallError, Registry};
use steadfast_state_machine::conversation::ChatMessage;

use super::body::BodyError;

/// The body POSTed to a downstream service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DownstreamRequest {
    /// The `wamid`.
    pub message_id: String,
    /// The sender's WhatsApp id.
    pub from: String,
    /// The message type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text (or interactive reply title).
    pub text: Option<String>,
    /// The conversation's state after this message (`agent_active`, ...).
    pub conversation_state: String,
    /// The correlation id of the delivery that brought the message.
    pub correlation_id: String,
    /// The conversation's last messages, oldest first (what an AI agent needs as memory).
    pub history: Vec<ChatMessage>,
}

/// What a downstream answered.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct DownstreamReply {
    /// Text to send back to the user.
    #[serde(default)]
    pub reply: Option<String>,
    /// The downstream considers the conversation finished.
    #[serde(default)]
    pub done: bool,
    /// `[{"type": "create_order", "data": {...}}, ...]`: what to run as a saga once the reply
    /// is recorded ([`crate::actions`]). Kept as JSON so that a malformed list never costs
    /// the user the reply: each entry is judged on its own.
    #[serde(default)]
    pub actions: serde_json::Value,
}

/// One attempt's error, as the registry sees it (counted by the endpoint's breaker).
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// Connection refused, reset, DNS...
    #[error("transport: {0}")]
    Transport(String),
    /// 5xx or 429.
    #[error("HTTP {status}")]
    Status {
        /// The status.
        status: u16,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// A 3xx. Redirects are not followed: a 307/308 would re-POST the user's phone number,
    /// text and history to whatever host the `Location` names. A redirect says the endpoint's
    /// configured URL is wrong, which is the endpoint's fault, not the message's: it counts
    /// as the endpoint's failure (its breaker sees it, and the service's other endpoints are
    /// tried within the attempt), but no later attempt would get another answer, so the
    /// message is not retried (see [`DownstreamError::Redirected`]).
    #[error("HTTP {status} (redirect not followed)")]
    Redirect {
        /// The status.
        status: u16,
    },
}

/// Why the message could not be handed to the downstream. The first three tell apart what
/// the queue treats differently (see [`crate::worker::pipeline`]): a failed call, a refusal
/// (no call made), a failed half-open probe.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// A call made while its endpoint's breaker was closed failed: timeout, 5xx, 429,
    /// transport error. An attempt: it says something about this message.
    #[error("{kind}: {message}")]
    Failed {
        /// Error class for the dead-letter history (`downstream_timeout`, `downstream_http_503`).
        kind: String,
        /// What happened.
        message: String,
        /// The downstream's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// No call was made (kind `downstream_unavailable`): every endpoint's breaker is open or
    /// refused, or no endpoint is healthy.
    #[error("downstream_unavailable: {message}")]
    Unavailable {
        /// What the registry said.
        message: String,
        /// When the first open breaker lets a probe through, when that is known.
        retry_after: Option<Duration>,
    },
    /// Only half-open probes ran, and they failed: the service is still down; the message is
    /// not to blame.
    #[error("{kind}: {message} (half-open probe)")]
    ProbeFailed {
        /// Error class, as for [`DownstreamError::Failed`].
        kind: String,
        /// What happened.
        message: String,
        /// When the breaker lets the next probe through (or the downstream's `Retry-After`,
        /// whichever is later), when known.
        retry_after: Option<Duration>,
    },
    /// The downstream refused the message (4xx): retrying will not help.
    #[error("downstream refused the message with HTTP {status}")]
    Rejected {
        /// The status.
        status: u16,
    },
    /// Every endpoint tried answered with a redirect (kind `downstream_redirect`): the
    /// configuration is wrong, and retrying will not help until an operator fixes it.
    #[error("downstream answered HTTP {status}; redirects are not followed")]
    Redirected {
        /// The status.
        status: u16,
    },
    /// The reply's body is larger than `worker.max_response_bytes` (kind
    /// `downstream_too_large`); nothing of it is kept. Not retried: the same message would get
    /// the same reply.
    #[error("downstream reply larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
}

impl DownstreamError {
    /// The error class recorded with the attempt (`downstream_timeout`, `downstream_http_404`,
    /// `downstream_redirect`, `downstream_too_large`, ...).
    pub fn kind(&self) -> String {
        match self {
            DownstreamError::Failed { kind, .. } | DownstreamError::ProbeFailed { kind, .. } => {
                kind.clone()
            }
            DownstreamError::Unavailable { .. } => "downstream_unavailable".into(),
            DownstreamError::Rejected { status } => format!("downstream_http_{status}"),
            DownstreamError::Redirected { .. } => "downstream_redirect".into(),
            DownstreamError::TooLarge { .. } => "downstream_too_large".into(),
        }
    }
}

/// The later of two waits (`None` only when both are unknown).
pub(crate) fn later(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// What the endpoint's breaker must not count, returned inside `Ok`:
/// - a 4xx is the message's fault, not the endpoint's;
/// - an oversized 2xx body is one reply's fault: the downstream did process the message, so
///   another endpoint must not be asked to process it again, and one bad reply says nothing
///   about the endpoint's availability.
enum Answer {
    Reply(DownstreamReply),
    Refused(u16),
    TooLarge(usize),
}

/// A `Retry-After` in seconds (the HTTP-date form is not used by the services we call).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Calls `service` with `body`; a reply body larger than `max_body` bytes is not read.
pub async fn call(
    registry: &Registry,
    client: &reqwest::Client,
    service: &str,
    body: &DownstreamRequest,
    max_body: usize,
) -> Result<DownstreamReply, DownstreamError> {
    let start = Instant::now();
    let result = registry
        .call(service, |endpoint| {
            let request = client
                .post(endpoint.url())
                .header("idempotency-key", &body.message_id)
                .header("x-request-id", &body.correlation_id)
                .json(body);
            async move {
                // A client span per endpoint tried, with `traceparent` sent.
                let res = crate::telemetry::client::send(request)
                    .await
                    .map_err(|e| AttemptError::Transport(e.without_url().to_string()))?;
                let status = res.status();
                if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    return Err(AttemptError::Status {
                        status: status.as_u16(),
                        retry_after: retry_after(res.headers()),
                    });
                }
                if status.is_redirection() {
                    return Err(AttemptError::Redirect {
                        status: status.as_u16(),
                    });
                }
                if !status.is_success() {
                    return Ok(Answer::Refused(status.as_u16()));
                }
                let bytes = match super::body::read_capped(res, max_body).await {
                    Ok(b) => b,
                    Err(BodyError::TooLarge { limit }) => return Ok(Answer::TooLarge(limit)),
                    Err(BodyError::Transport(m)) => return Err(AttemptError::Transport(m)),
                };
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Answer::Reply(DownstreamReply::default()));
                }
                match serde_json::from_slice::<DownstreamReply>(&bytes) {
                    Ok(r) => Ok(Answer::Reply(r)),
                    Err(e) => {
                        tracing::warn!(error = %e, "downstream answered 2xx with an unreadable body; no reply sent");
                        Ok(Answer::Reply(DownstreamReply::default()))
                    }
                }
            }
        })
        .await;
    let outcome = match &result {
        Ok(Answer::Reply(_)) => "ok",
        Ok(Answer::Refused(_)) => "refused",
        Ok(Answer::TooLarge(_)) => "too_large",
        Err(CallError::Failed {
            error: AttemptError::Redirect { .. },
            ..
        }) => "redirect",
        Err(CallError::Timeout { .. }) => "timeout",
        Err(CallError::Unavailable(_)) => "unavailable",
        Err(_) => "error",
    };
    metrics::histogram!(crate::metrics::DOWNSTREAM_DURATION, "service" => service.to_owned(), "outcome" => outcome)
        .record(start.elapsed());
    // A probe's failure reopened the breaker: come back when it lets the next one through.
    let probe_failed = |kind: String, message: String, retry_after: Option<Duration>| {
        DownstreamError::ProbeFailed {
            kind,
            message,
            retry_after: later(registry.retry_after(service), retry_after),
        }
    };
    match result {
        Ok(Answer::Reply(r)) => Ok(r),
        Ok(Answer::Refused(status)) => Err(DownstreamError::Rejected { status }),
        Ok(Answer::TooLarge(limit)) => Err(DownstreamError::TooLarge { limit }),
        Err(CallError::Timeout { after, probe, .. }) => {
            let kind = "downstream_timeout".to_owned();
            let message = format!("{service} did not answer within {after:?}");
            Err(if probe {
                probe_failed(kind, message, None)
            } else {
                DownstreamError::Failed {
                    kind,
                    message,
                    retry_after: None,
                }
            })
        }
        Err(CallError::Unavailable(e)) => Err(match e {
            steadfast_service_registry::Error::Rejected { retry_after, .. } => {
                DownstreamError::Unavailable {
                    message: e.to_string(),
                    retry_after,
                }
            }
            // Ejected endpoints are what an open breaker looks like from here.
            steadfast_service_registry::Error::NoHealthyEndpoint { .. } => {
                DownstreamError::Unavailable {
                    message: e.to_string(),
                    retry_after: registry.retry_after(service),
                }
            }
            // An unknown service is the configuration's fault: counted as attempts, so the
            // message dead-letters and is replayed once the configuration is fixed.
            other => DownstreamError::Failed {
                kind: "downstream_unavailable".into(),
                message: other.to_string(),
                retry_after: None,
            },
        }),
        Err(CallError::Failed { error, probe, .. }) => {
            let (kind, message, retry_after) = match error {
                // The endpoint's configuration, not its health: not retried, probe or not.
                AttemptError::Redirect { status } => {
                    return Err(DownstreamError::Redirected { status });
                }
                AttemptError::Transport(m) => (
                    "downstream_transport".to_owned(),
                    format!("{service}: {m}"),
                    None,
                ),
                AttemptError::Status {
                    status,
                    retry_after,
                } => (
                    format!("downstream_http_{status}"),
                    format!("{service} answered HTTP {status}"),
                    retry_after,
                ),
            };
            Err(if probe {
                probe_failed(kind, message, retry_after)
            } else {
                DownstreamError::Failed {
                    kind,
                    message,
                    retry_after,
                }
            })
        }
        Err(other) => Err(DownstreamError::Failed {
            kind: "downstream_error".into(),
            message: other.to_string(),
            retry_after: None,
        }),
    }
}
