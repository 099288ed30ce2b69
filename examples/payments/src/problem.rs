//! Error answers: RFC 9457 problem details through the kit's `Problem`, with this
//! service's problem types.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
pub use steadfast_service_kit::problem::{CONTENT_TYPE, Problem};

use crate::ledger::LedgerError;

/// The problem type of a refused debit.
pub const INSUFFICIENT_FUNDS: &str = "insufficient-funds";

/// A problem with `status`, a type and a detail.
pub fn problem(status: StatusCode, kind: &str, detail: impl Into<String>) -> Response {
    Problem::new(status)
        .kind(kind)
        .detail(detail)
        .into_response()
}

/// 400 for a field that failed its check.
pub fn bad_request(detail: impl Into<String>) -> Response {
    problem(StatusCode::BAD_REQUEST, "invalid-request", detail)
}

/// The answer for a ledger error. Store errors say only that the store is unavailable: the
/// cause goes to the log, never to the client.
pub fn ledger(e: &LedgerError) -> Response {
    match e {
        LedgerError::AccountNotFound(_) | LedgerError::PayoutNotFound(_) => {
            problem(StatusCode::NOT_FOUND, "not-found", e.to_string())
        }
        LedgerError::AccountExists(_) | LedgerError::PayoutExists(_) => {
            problem(StatusCode::CONFLICT, "already-exists", e.to_string())
        }
        LedgerError::CurrencyMismatch { .. } => {
            problem(StatusCode::BAD_REQUEST, "currency-mismatch", e.to_string())
        }
        LedgerError::SameAccount | LedgerError::Overflow(_) => bad_request(e.to_string()),
        LedgerError::InsufficientFunds(_) => problem(
            StatusCode::PAYMENT_REQUIRED,
            INSUFFICIENT_FUNDS,
            e.to_string(),
        ),
        LedgerError::Store(cause) => {
            tracing::error!(error = %cause, "ledger store unavailable");
            unavailable()
        }
    }
}

/// 503 with `Retry-After: 1`: a store is down; the caller retries.
pub fn unavailable() -> Response {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .kind("store-unavailable")
        .detail("a store is unavailable; retry shortly")
        .header(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        )
        .into_response()
}
