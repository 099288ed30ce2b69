//! `GET /webhook` (the subscription handshake) and `POST /webhook` (deliveries).

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::metrics as m;
use crate::payload::{self, StatusKind};
use crate::problem::Problem;
use crate::signature::{self, SignatureError};
use crate::telemetry::CorrelationId;

/// The handshake's query.
#[derive(Debug, Deserialize)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// `GET /webhook`: 200 with the challenge, unchanged, when the token matches; 403 otherwise.
pub async fn verify(State(app): State<AppState>, Query(q): Query<Handshake>) -> Response {
    let expected = app.config.whatsapp.verify_token.expose().as_bytes();
    let token_ok = q
        .verify_token
        .as_deref()
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected)));
    match (q.mode.as_deref(), token_ok, q.challenge) {
        (Some("subscribe"), true, Some(challenge)) => {
            tracing::info!("webhook subscription verified");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                challenge,
            )
                .into_response()
        }
        _ => {
            tracing::warn!("webhook verification refused");
            Problem::new(StatusCode::FORBIDDEN)
                .detail("hub.mode must be subscribe and hub.verify_token must match")
                .into_response()
        }
    }
}

fn signature_problem(e: &SignatureError) -> Response {
    let reason = match e {
        SignatureError::Missing => "missing",
        SignatureError::Malformed(_) => "malformed",
        SignatureError::Mismatch => "mismatch",
    };
    metrics::counter!(m::SIGNATURE_FAILURES, "reason" => reason).increment(1);
    tracing::warn!(reason, "signature refused");
    Problem::new(e.status())
        .detail(e.to_string())
        .into_response()
}

fn too_large(limit: usize) -> Response {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
        .detail(format!("body larger than {limit} bytes"))
        .into_response()
}

/// `POST /webhook`: signature, size, parse, one durable write, 200 only after it committed.
pub async fn receive(State(app): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let correlation_id = parts
        .extensions
        .get::<CorrelationId>()
        .map(|c| c.0.clone())
        .unwrap_or_default();

    // A missing or malformed header is refused before the body is read.
    let header = parts.headers.get(signature::HEADER).map(|v| v.as_bytes());
    let digest = match header
        .ok_or(SignatureError::Missing)
        .and_then(signature::parse_header)
    {
        Ok(d) => d,
        Err(e) => return signature_problem(&e),
    };

    let limit = app.config.http.body_limit_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return too_large(limit),
        Err(e) => {
            return Problem::new(StatusCode::BAD_REQUEST)
                .detail(format!("could not read the body: {e}"))
                .into_response();
        }
    };

    if let Err(e) = app.verifier.verify_digest(&digest, &bytes) {
        return signature_problem(&e);
    }

    let delivery = match payload::parse(&bytes) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "unparseable delivery");
            return Problem::new(StatusCode::BAD_REQUEST)
                .detail(e.to_string())
                .into_response();
        }
    };

    // Checked before anything is stored, so a refused delivery leaves nothing behind.
    let max_items = app.config.http.max_messages_per_delivery;
    if delivery.items() > max_items {
        tracing::warn!(
            items = delivery.items(),
            max_items,
            "delivery refused: too many messages"
        );
        return Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
            .detail(format!(
                "delivery carries {} messages and statuses; at most {max_items} are accepted",
                delivery.items()
            ))
            .into_response();
    }
    // A signed delivery captured and replayed after the de-duplication window would be new
    // again to every store. Meta itself stops retrying well within the window, so a delivery
    // whose every item is older is a replay: answered 200 (a retry would not change it) and
    // counted, never stored.
    let max_age = i64::try_from(app.config.http.max_delivery_age.as_secs()).unwrap_or(i64::MAX);
    let cutoff = chrono::Utc::now().timestamp().saturating_sub(max_age);
    if delivery.all_older_than(cutoff) {
        let stale = delivery.messages.len() + delivery.statuses.len();
        metrics::counter!(m::MESSAGES, "outcome" => "stale").increment(stale as u64);
        tracing::warn!(
            items = stale,
            max_age_s = max_age,
            "stale delivery ignored (every timestamp older than the delivery age limit)"
        );
        let report = crate::ingest::IngestReport {
            stale,
            ..crate::ingest::IngestReport::default()
        };
        return (StatusCode::OK, Json(report)).into_response();
    }

    for s in &delivery.statuses {
        metrics::counter!(m::STATUSES, "status" => s.status.as_str()).increment(1);
        if s.status == StatusKind::Failed {
            for err in &s.errors {
                tracing::warn!(
                    message_id = %s.message_id,
                    recipient = %crate::mask::Masked(s.recipient_id.as_deref().unwrap_or("")),
                    code = err.code,
                    error = %err.title,
                    "outbound message failed"
                );
            }
        }
    }

    match app.ingestor.ingest(&delivery, &correlation_id).await {
        Ok(report) => {
            let count = |outcome: &'static str, n: usize| {
                if n > 0 {
                    metrics::counter!(m::MESSAGES, "outcome" => outcome).increment(n as u64);
                }
            };
            count("accepted", report.accepted);
            count("duplicate", report.duplicates);
            count("malformed", report.malformed);
            if report.ignored > 0 {
                metrics::counter!(m::IGNORED).increment(report.ignored as u64);
            }
            tracing::info!(
                accepted = report.accepted,
                duplicates = report.duplicates,
                statuses = report.statuses,
                ignored = report.ignored,
                malformed = report.malformed,
                "delivery stored"
            );
            (StatusCode::OK, Json(report)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, messages = delivery.messages.len(), "queue store unavailable; delivery refused");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .detail("the message store is unavailable; retry later")
                .header(header::RETRY_AFTER, http::HeaderValue::from_static("5"))
                .into_response()
        }
    }
}
