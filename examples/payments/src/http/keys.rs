//! The `Idempotency-Key` syntax check in front of the idempotency layer.
//!
//! The layer refuses a bad key with a detail naming the bound it broke ("at least 16
//! required"); the contract promises a detail naming both bounds, so a malformed key is
//! answered here, in the layer's own problem shape and code. (A follow-up for the crate: name
//! both bounds in `KeyError`'s message, and this module goes.)

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use steadfast_idempotency::KeyRules;
use steadfast_idempotency::http::{IDEMPOTENCY_KEY, Problem, ProblemCode};

/// Middleware: 400 `invalid_idempotency_key` naming 16 and 255 for a single malformed key;
/// everything else (missing, two fields, valid) is the layer's to answer.
pub async fn check(request: Request, next: Next) -> Response {
    let mut fields = request.headers().get_all(IDEMPOTENCY_KEY).iter();
    if let (Some(raw), None) = (fields.next(), fields.next()) {
        let rules = KeyRules::default();
        if let Err(e) = rules.parse_header(raw.as_bytes()) {
            return Problem::new(
                ProblemCode::InvalidKey,
                format!(
                    "Idempotency-Key must be {} to {} visible ASCII characters: {e}",
                    rules.min_len(),
                    rules.max_len()
                ),
            )
            .into_response();
        }
    }
    next.run(request).await
}
