//! The tower [`IdempotencyLayer`] (feature `tower`), usable with axum.
//!
//! Guards unsafe methods (POST and PATCH by default; PUT and DELETE on request) that carry an
//! `Idempotency-Key` header:
//!
//! | situation | answer |
//! |---|---|
//! | key missing (when required, the default) | 400 `missing_idempotency_key` |
//! | key malformed, or two `Idempotency-Key` fields | 400 `invalid_idempotency_key` |
//! | first request | the handler runs; its response is stored (2xx, 4xx by default) |
//! | retry, same request | the stored response, byte-identical, plus `Idempotent-Replayed: true` |
//! | retry while the first still runs | 409 `request_in_flight` with `Retry-After` |
//! | same key, different request | 422 `idempotency_key_reused` |
//! | store down, `FailClosed` (default) | 503 `idempotency_store_unavailable` with `Retry-After` |
//! | store down, `FailOpen` | the handler runs unprotected (counted) |
//! | retry of a request whose response exceeded `max_response_bytes` | 409 `response_not_replayable` |
//!
//! Errors are `application/problem+json` (RFC 9457) with `type`, `title`, `status`, `detail`
//! and a stable `code`.
//!
//! Design notes:
//! - The request body is buffered (up to `max_request_bytes`, 413 beyond) because the
//!   fingerprint covers it; the handler then gets the same bytes.
//! - A key sent as a Structured Field string (`"key"`, as the IETF draft defines the field) is
//!   unquoted first ([`KeyRules::parse_header`](crate::KeyRules::parse_header)).
//! - The response body of a stored outcome is buffered to store it, up to
//!   `max_response_bytes`. Beyond that (or with a larger `Content-Length`) buffering stops:
//!   what was read and the rest stream to the client, and the key is completed as not
//!   replayable, so a retry never runs the handler again. Responses that are not stored (5xx
//!   by default) stream through untouched. Every response's body is a [`ResponseBody`].
//! - If the client disconnects, the response future is dropped and with it the
//!   [`Lease`](crate::Lease), which releases the key in the background; a handler panic does
//!   the same. Once a not-replayable record is written, a disconnect during the streamed rest
//!   changes nothing: the handler has run.
//! - The inner service must be `Clone` (the usual tower pattern): each request drives its own
//!   clone inside a boxed future.

mod body;
mod layer;
mod problem;
mod service;

pub use body::ResponseBody;
pub use layer::IdempotencyLayer;
pub use problem::{Problem, ProblemCode};
pub use service::{IdempotencyService, ResponseFuture};

/// The request header carrying the key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The header marking a replayed response.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
