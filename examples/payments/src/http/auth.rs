//! Bearer-token checks for `/v1` and `/admin`, in constant time.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::problem::Problem;

/// The token a request presents (`Authorization: Bearer <token>`), if any.
pub fn bearer(headers: &http::HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// Whether `presented` is `expected`. Both are hashed first so the comparison takes the same
/// time whatever the lengths.
pub fn matches(presented: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(presented), Sha256::digest(expected));
    a.ct_eq(&b).into()
}

/// The idempotency scope of a request: a digest of its API token, so that keys of one token
/// never meet another's and the token itself is never stored.
pub fn scope(headers: &http::HeaderMap) -> Option<String> {
    bearer(headers).map(|t| hex::encode(&Sha256::digest(t)[..12]))
}

fn unauthorized() -> Response {
    Problem::new(StatusCode::UNAUTHORIZED)
        .kind("unauthorized")
        .detail("a valid `Authorization: Bearer <token>` header is required")
        .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
        .into_response()
}

/// The expected token of a route group.
#[derive(Clone)]
pub struct Token(pub std::sync::Arc<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// Middleware: 401 unless the request carries the token.
pub async fn require(State(token): State<Token>, request: Request, next: Next) -> Response {
    match bearer(request.headers()) {
        Some(presented) if matches(presented, &token.0) => next.run(request).await,
        _ => unauthorized(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_tokens() {
        let mut h = http::HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        assert!(matches(b"abc", b"abc"));
        assert!(!matches(b"abc", b"abd"));
        assert!(!matches(b"", b"abc"));
    }

    #[test]
    fn idempotency_scopes_follow_the_token_and_hide_it() {
        let with = |t: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
            scope(&h)
        };
        let a = with("token-one-0123456789").unwrap();
        assert_eq!(with("token-one-0123456789").unwrap(), a);
        assert_ne!(with("token-two-0123456789").unwrap(), a);
        assert!(!a.contains("token"));
        assert_eq!(scope(&http::HeaderMap::new()), None);
    }
}
