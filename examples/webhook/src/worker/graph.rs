//! Replies to users through the WhatsApp Graph API, behind the `whatsapp-graph-api` breaker.

use std::time::Duration;

use serde_json::json;
use steadfast_circuit_breaker::CircuitBreaker;

use crate::config::Secret;
use crate::mask::Masked;

/// The breaker's name.
pub const BREAKER: &str = "whatsapp-graph-api";

/// Why a reply was not sent. The first three tell apart what the queue treats differently
/// (see [`crate::worker::pipeline`]): a failed call, a refusal by the open breaker (no call
/// made), a failed half-open probe.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A call made while the breaker was closed failed (5xx, 429, timeout, transport): an
    /// attempt.
    #[error("{kind}: {message}")]
    Failed {
        /// Error class (`graph_http_503`, `graph_timeout`, ...).
        kind: String,
        /// What happened.
        message: String,
        /// The Graph API's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The breaker refused the call (kind `graph_breaker_open`): nothing was sent.
    #[error("graph_breaker_open: {BREAKER} breaker is {state}")]
    BreakerOpen {
        /// The breaker's state (`open`, `half_open` with its probes in flight, `forced_open`).
        state: &'static str,
        /// When it lets a probe through, when it knows.
        retry_after: Option<Duration>,
    },
    /// The call was the breaker's half-open probe, and it failed: the Graph API is still down.
    #[error("{kind}: {message} (half-open probe)")]
    ProbeFailed {
        /// Error class, as for [`SendError::Failed`].
        kind: String,
        /// What happened.
        message: String,
        /// When the breaker lets the next probe through (or the `Retry-After`, whichever is
        /// later), when known.
        retry_after: Option<Duration>,
    },
    /// Refused by the Graph API (4xx: bad recipient, expired token...).
    #[error("Graph API refused the reply with HTTP {status}")]
    Refused {
        /// The status.
        status: u16,
    },
    /// The Graph API answered with a redirect (kind `graph_redirect`). Not followed: the
    /// reply (and the bearer token) would go wherever `Location` points. `graph_api_url` is
    /// wrong; retrying will not help until an operator fixes it.
    #[error("Graph API answered HTTP {status}; redirects are not followed")]
    Redirected {
        /// The status.
        status: u16,
    },
    /// The delivery's `phone_number_id` is not a number (kind `graph_bad_phone_number_id`):
    /// it goes into the request path, so nothing was sent. Not retryable.
    #[error("phone_number_id is not 1 to {MAX_PHONE_NUMBER_ID_LEN} ASCII digits")]
    BadPhoneNumberId,
}

impl SendError {
    /// The error class recorded with the attempt (`graph_http_503`, `graph_redirect`, ...).
    pub fn kind(&self) -> String {
        match self {
            SendError::Failed { kind, .. } | SendError::ProbeFailed { kind, .. } => kind.clone(),
            SendError::BreakerOpen { .. } => "graph_breaker_open".into(),
            SendError::Refused { status } => format!("graph_http_{status}"),
            SendError::Redirected { .. } => "graph_redirect".into(),
            SendError::BadPhoneNumberId => "graph_bad_phone_number_id".into(),
        }
    }
}

/// WhatsApp's limit on a text message's body, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// The longest `phone_number_id` taken (Meta's are 15 or 16 digits).
pub const MAX_PHONE_NUMBER_ID_LEN: usize = 32;

/// `text` cut to at most [`MAX_TEXT_CHARS`] characters (Unicode scalar values, not bytes),
/// at a character boundary: a longer body would be refused by the Graph API, and the same
/// cut text is what the conversation records.
pub fn cap_text(text: &str) -> &str {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Whether `id` may go into the Graph API path: 1 to [`MAX_PHONE_NUMBER_ID_LEN`] ASCII digits.
/// It comes from the delivery's metadata; anything else (`..`, `/`, `?`, `%2F`) would let the
/// sender choose the path the token is sent to.
pub fn valid_phone_number_id(id: &str) -> bool {
    (1..=MAX_PHONE_NUMBER_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
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
    Redirected(u16),
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

    /// Sends `text` to `to` from our number `phone_number_id` (which must be digits, see
    /// [`valid_phone_number_id`]; checked in demo mode too, so both modes fail alike).
    pub async fn send_text(
        &self,
        phone_number_id: &str,
        to: &str,
        text: &str,
    ) -> Result<(), SendError> {
        if !valid_phone_number_id(phone_number_id) {
            metrics::counter!(crate::metrics::OUTBOUND_REPLIES, "outcome" => "rejected")
                .increment(1);
            return Err(SendError::BadPhoneNumberId);
        }
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
        // Through the permit rather than `call_with`: whether the call is a half-open probe
        // decides what its failure means to the queue.
        let permit = match self.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(rejected) => {
                metrics::counter!(crate::metrics::OUTBOUND_REPLIES, "outcome" => "breaker_open")
                    .increment(1);
                return Err(SendError::BreakerOpen {
                    state: rejected.state.as_str(),
                    retry_after: rejected.retry_after,
                });
            }
        };
        let probe = permit.is_probe();
        let call = async move {
            let res = crate::telemetry::client::send(request).await?;
            let status = res.status();
            Ok::<_, reqwest::Error>(if status.is_success() {
                Sent::Ok
            } else if status.is_redirection() {
                Sent::Redirected(status.as_u16())
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
        };
        // `None`: the breaker's call timeout elapsed.
        let result = match self.breaker.config().call_timeout() {
            Some(limit) => tokio::time::timeout(limit, call).await.ok(),
            None => Some(call.await),
        };
        // A 4xx is about this reply, not the Graph API's health: the breaker ignores it. A
        // redirect is about the configured URL, which every reply shares: it counts as a
        // failure, so a wrong `graph_api_url` opens the breaker and later replies wait (and
        // are retried once it is fixed) instead of each becoming a dead letter.
        match &result {
            Some(Ok(Sent::Ok)) => permit.success(),
            Some(Ok(Sent::Refused(_))) => permit.ignore(),
            _ => permit.failure(),
        }
        let failed = |kind: String, message: String, retry_after: Option<Duration>| {
            if probe {
                SendError::ProbeFailed {
                    kind,
                    message,
                    retry_after: super::downstream::later(
                        self.breaker.metrics().time_until_half_open(),
                        retry_after,
                    ),
                }
            } else {
                SendError::Failed {
                    kind,
                    message,
                    retry_after,
                }
            }
        };
        let (outcome, ret) = match result {
            Some(Ok(Sent::Ok)) => ("sent", Ok(())),
            Some(Ok(Sent::Refused(status))) => ("rejected", Err(SendError::Refused { status })),
            Some(Ok(Sent::Redirected(status))) => ("failed", Err(SendError::Redirected { status })),
            Some(Ok(Sent::Failed(status, retry_after))) => (
                "failed",
                Err(failed(
                    format!("graph_http_{status}"),
                    format!("Graph API answered HTTP {status}"),
                    retry_after,
                )),
            ),
            None => (
                "failed",
                Err(failed(
                    "graph_timeout".into(),
                    "Graph API call timed out".into(),
                    None,
                )),
            ),
            Some(Err(e)) => (
                "failed",
                Err(failed(
                    if e.is_timeout() {
                        "graph_timeout".into()
                    } else {
                        "graph_transport".into()
                    },
                    e.without_url().to_string(),
                    None,
                )),
            ),
        };
        metrics::counter!(crate::metrics::OUTBOUND_REPLIES, "outcome" => outcome).increment(1);
        ret
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steadfast_circuit_breaker::Preset;

    #[test]
    fn phone_number_ids_are_digits_only() {
        for ok in ["106540352242922", "1", &"9".repeat(MAX_PHONE_NUMBER_ID_LEN)] {
            assert!(valid_phone_number_id(ok), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../../me",
            "123/../456",
            "123?x=1",
            "123%2F456",
            "123#",
            " 123",
            "123 ",
            "+123",
            "-1",
            "1e5",
            "\u{0661}\u{0662}", // Arabic-Indic digits are digits, not ASCII ones
            "１２３",           // full-width
            &"9".repeat(MAX_PHONE_NUMBER_ID_LEN + 1),
        ] {
            assert!(!valid_phone_number_id(bad), "{bad:?}");
        }
    }

    /// A bad id is refused before any request: the base URL here would fail the test with a
    /// transport error (nothing listens on port 9) if one were made, and the breaker records
    /// nothing.
    #[tokio::test]
    async fn a_bad_phone_number_id_is_a_typed_error_and_no_request() {
        let breakers = steadfast_circuit_breaker::Registry::new();
        let breaker = breakers.get_or_create(BREAKER, Preset::Standard);
        let client = GraphClient::new(
            reqwest::Client::new(),
            "http://127.0.0.1:9".into(),
            Some(Secret::new("test-access-token")),
            Duration::from_secs(1),
            breaker.clone(),
        );
        for bad in ["../../v1/other", "1/messages?x=", ""] {
            let err = client
                .send_text(bad, "250788123456", "hi")
                .await
                .unwrap_err();
            assert!(matches!(err, SendError::BadPhoneNumberId), "{bad}: {err}");
            assert_eq!(err.kind(), "graph_bad_phone_number_id");
        }
        assert_eq!(
            breaker.metrics().calls,
            0,
            "no call went through the breaker"
        );
        // Demo mode (no token) refuses it the same way.
        let demo = GraphClient::new(
            reqwest::Client::new(),
            "http://127.0.0.1:9".into(),
            None,
            Duration::from_secs(1),
            breaker,
        );
        assert!(matches!(
            demo.send_text("a/b", "250788123456", "hi").await,
            Err(SendError::BadPhoneNumberId)
        ));
    }

    #[test]
    fn text_is_capped_at_4096_characters_on_a_char_boundary() {
        assert_eq!(cap_text("short"), "short");
        let exact = "a".repeat(MAX_TEXT_CHARS);
        assert_eq!(cap_text(&exact), exact);
        let long = "a".repeat(5000);
        assert_eq!(cap_text(&long).chars().count(), MAX_TEXT_CHARS);
        // Multi-byte characters: counted as characters, cut between them.
        let wide = "é☕😀".repeat(2000);
        let cut = cap_text(&wide);
        assert_eq!(cut.chars().count(), MAX_TEXT_CHARS);
        assert!(wide.starts_with(cut));
        assert!(cut.len() > MAX_TEXT_CHARS, "bytes are not the measure");
    }
}
