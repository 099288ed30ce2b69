//! The provider client: `POST {api_url}/disbursements`, classified for the saga.
//!
//! One call is one attempt; the saga step retries it under its policy and behind the
//! breaker. `X-Reference-Id` is the payout id, the provider's idempotency key, so a retried
//! request (after a timeout whose request did arrive, or after a crash) never pays twice.

use std::time::Duration;

use serde::Serialize;
use steadfast_saga::StepError;
use steadfast_service_kit::secret::Secret;

use crate::ledger::Payout;

/// The provider's disbursement request body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DisbursementRequest {
    /// The payout id.
    pub external_id: String,
    /// Minor units.
    pub amount: i64,
    /// Currency.
    pub currency: String,
    /// The payee.
    pub msisdn: String,
}

/// The HTTP client of the provider API.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    api_url: String,
    api_key: Secret,
    max_retry_after: Duration,
}

/// A `Retry-After` in seconds (the HTTP-date form is ignored: the policy's backoff applies),
/// capped at `max`.
fn retry_after(headers: &reqwest::header::HeaderMap, max: Duration) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(max))
}

impl ProviderClient {
    /// A client of `api_url` with `api_key`; each request gives up after `timeout`; a
    /// provider's `Retry-After` is honoured up to `max_retry_after`.
    pub fn new(
        api_url: impl Into<String>,
        api_key: Secret,
        timeout: Duration,
        max_retry_after: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(ProviderClient {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()?,
            api_url: api_url.into().trim_end_matches('/').to_owned(),
            api_key,
            max_retry_after,
        })
    }

    /// Requests the disbursement of `payout`: `Ok` when the provider accepted it (2xx); a
    /// retryable error on 5xx, 429, timeouts and connection errors; a permanent one on any
    /// other answer (the provider refused it).
    pub async fn disburse(&self, payout: &Payout) -> Result<(), StepError> {
        let body = DisbursementRequest {
            external_id: payout.id.clone(),
            amount: payout.amount,
            currency: payout.currency.to_string(),
            msisdn: payout.msisdn.clone(),
        };
        let started = std::time::Instant::now();
        let request = self
            .http
            .post(format!("{}/disbursements", self.api_url))
            .bearer_auth(self.api_key.expose())
            .header("x-reference-id", &payout.id)
            .json(&body);
        // A client span, and `traceparent` to the provider.
        let answer = steadfast_service_kit::telemetry::client::send(request).await;
        let outcome = match answer {
            Err(e) => {
                let what = if e.is_timeout() {
                    "timeout"
                } else {
                    "unreachable"
                };
                Err(StepError::retryable(format!("provider {what}: {e}")))
            }
            Ok(res) => {
                let status = res.status();
                if status.is_success() {
                    Ok(())
                } else if status.is_server_error() || status.as_u16() == 429 {
                    let err = StepError::retryable(format!("provider answered {status}"));
                    Err(match retry_after(res.headers(), self.max_retry_after) {
                        Some(d) => err.retry_after(d),
                        None => err,
                    })
                } else {
                    Err(StepError::permanent(format!("provider refused: {status}")))
                }
            }
        };
        let label = match &outcome {
            Ok(()) => "accepted",
            Err(e) if e.is_retryable() => "retryable",
            Err(_) => "refused",
        };
        metrics::counter!(crate::metrics::PROVIDER_CALLS, "outcome" => label).increment(1);
        metrics::histogram!(crate::metrics::PROVIDER_DURATION)
            .record(started.elapsed().as_secs_f64());
        tracing::info!(payout = %payout.id, msisdn = %steadfast_service_kit::mask::mask_phone(&payout.msisdn), outcome = label, "disbursement requested");
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h, Duration::from_secs(30)), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(
            retry_after(&h, Duration::from_secs(30)),
            Some(Duration::from_secs(7))
        );
        h.insert("retry-after", "3600".parse().unwrap());
        assert_eq!(
            retry_after(&h, Duration::from_secs(30)),
            Some(Duration::from_secs(30))
        );
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, Duration::from_secs(30)), None);
    }
}
