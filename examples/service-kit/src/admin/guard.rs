//! The admin token check: `Authorization: Bearer <token>` (401 without it), or the console's
//! session cookie ([`crate::console::auth`]); a state-changing request on the cookie must also
//! carry [`CSRF_HEADER`](crate::console::auth::CSRF_HEADER), else 403. Failures are counted
//! ([`ADMIN_AUTH_FAILURES`](crate::metrics::ADMIN_AUTH_FAILURES)) and logged without what was
//! presented: a near-miss token, or the real one sent to the wrong place, must not end up in
//! the logs.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http::{HeaderValue, StatusCode, header};
use subtle::ConstantTimeEq;

use crate::console::auth::{self as session, CookieAuth};
use crate::problem::Problem;
use crate::secret::Secret;

/// The expected token (the state of [`require`]).
#[derive(Clone)]
pub struct Guard {
    token: Secret,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guard(***)")
    }
}

impl Guard {
    /// A check against `token`.
    pub fn new(token: Secret) -> Self {
        Self { token }
    }
}

/// Middleware: `axum::middleware::from_fn_with_state(guard, require)`.
pub async fn require(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let token = guard.token.expose();
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let failure = match presented {
        Some(p) if !bool::from(p.as_bytes().ct_eq(token.as_bytes())) => Some("mismatch"),
        Some(_) => None,
        // No bearer token: the console's session cookie, with its CSRF header for anything
        // that changes state.
        None => match session::from_headers(request.headers(), token, Utc::now()) {
            CookieAuth::Absent => Some("missing"),
            CookieAuth::Invalid => Some("mismatch"),
            CookieAuth::Valid(s) => {
                if session::is_safe(request.method()) || session::csrf_ok(request.headers(), &s) {
                    None
                } else {
                    session::note_failure("csrf", request.method(), "admin API");
                    return Problem::new(StatusCode::FORBIDDEN)
                        .detail(format!(
                            "a request that changes state on the console's cookie must carry {}",
                            session::CSRF_HEADER
                        ))
                        .into_response();
                }
            }
        },
    };
    if let Some(reason) = failure {
        session::note_failure(reason, request.method(), "admin API");
        return Problem::new(StatusCode::UNAUTHORIZED)
            .detail("admin API: send Authorization: Bearer <ADMIN_TOKEN>")
            .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            .into_response();
    }
    next.run(request).await
}
