//! Login, the session cookie and CSRF.
//!
//! `POST /admin/ui/login` takes the admin token from a form, compares it in constant time
//! (failures logged and counted like the admin API's, never with what was typed), and sets
//! the cookie [`COOKIE`]. The cookie does not hold the token: it holds an issue time, a random
//! nonce and an HMAC-SHA256 of both keyed by the admin token. So it checks without any server
//! state (every instance, every restart), expires after [`SESSION_TTL`], stops working when
//! the token is rotated, and a leaked cookie does not leak the token.
//!
//! Cookie flags: `HttpOnly` (scripts cannot read it), `SameSite=Strict` (no other site's page
//! makes the browser send it), `Path=/admin` (the console and the admin API it calls), and
//! `Secure` when the request came over https. The service itself speaks plain HTTP behind a
//! TLS proxy, so "came over https" is the proxy's `X-Forwarded-Proto: https`, believed only
//! when `http.trust_forwarded_for` says a proxy is in front (the same switch that makes the
//! service believe `X-Forwarded-For`).
//!
//! CSRF: SameSite=Strict already keeps cross-site requests from carrying the cookie; on top of
//! it, every state-changing request authenticated by the cookie must carry the header
//! [`CSRF_HEADER`] with the session's CSRF token (an HMAC of the session's nonce under the
//! admin token, rendered into each page for its scripts). A cross-site form cannot set a
//! header, and a cross-site script cannot read the page to learn the token. Neither the token
//! nor the CSRF token is ever put in a URL or logged.

use std::time::Duration;

use axum::Extension;
use axum::Form;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use rand::Rng;
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Console;

/// The session cookie's name.
pub const COOKIE: &str = "steadfast_admin";

/// The header a cookie-authenticated, state-changing request must carry.
pub const CSRF_HEADER: &str = "x-steadfast-csrf";

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &str, purpose: &str, data: &str) -> String {
    // HMAC takes keys of any length; the error arm cannot happen.
    let Ok(mut m) = HmacSha256::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    m.update(purpose.as_bytes());
    m.update(b"\0");
    m.update(data.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// A valid session: what a page needs to act (its CSRF token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's `<issued>.<nonce>`.
    id: String,
    /// The CSRF token of this session, for [`CSRF_HEADER`].
    pub csrf: String,
}

/// A new session cookie value for `token`, issued at `now`.
pub fn issue(token: &str, now: DateTime<Utc>) -> String {
    let nonce: [u8; 16] = rand::rng().random();
    let id = format!("{}.{}", now.timestamp(), hex::encode(nonce));
    let tag = mac(token, "steadfast-console-session", &id);
    format!("{id}.{tag}")
}

/// The session of cookie value `value`, when its HMAC is right for `token` and it is not
/// older than [`SESSION_TTL`] at `now`.
pub fn verify(token: &str, value: &str, now: DateTime<Utc>) -> Option<Session> {
    let (id, tag) = value.rsplit_once('.')?;
    let (issued, _nonce) = id.split_once('.')?;
    let expected = mac(token, "steadfast-console-session", id);
    if !bool::from(expected.as_bytes().ct_eq(tag.as_bytes())) {
        return None;
    }
    let issued = DateTime::from_timestamp(issued.parse().ok()?, 0)?;
    let age = now.signed_duration_since(issued);
    let ttl = chrono::Duration::from_std(SESSION_TTL).ok()?;
    if age > ttl || age < -chrono::Duration::minutes(5) {
        return None;
    }
    Some(Session {
        csrf: mac(token, "steadfast-console-csrf", id),
        id: id.to_owned(),
    })
}

/// The value of cookie `name` in `headers`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// How a request without a bearer token stands with the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieAuth {
    /// No session cookie.
    Absent,
    /// A cookie that is forged, expired, or from before a token rotation.
    Invalid,
    /// A valid session.
    Valid(Session),
}

/// Checks the session cookie of `headers` against `token` at `now`.
pub fn from_headers(headers: &HeaderMap, token: &str, now: DateTime<Utc>) -> CookieAuth {
    match cookie(headers, COOKIE) {
        None | Some("") => CookieAuth::Absent,
        Some(v) => verify(token, v, now).map_or(CookieAuth::Invalid, CookieAuth::Valid),
    }
}

/// Whether `method` changes nothing (and so needs no CSRF token).
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether `headers` carry `session`'s CSRF token.
pub fn csrf_ok(headers: &HeaderMap, session: &Session) -> bool {
    headers
        .get(CSRF_HEADER)
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(session.csrf.as_bytes())))
}

/// Counts and logs a failed authentication, as the admin API does (without what was sent).
pub fn note_failure(reason: &'static str, method: &Method, what: &'static str) {
    metrics::counter!(crate::metrics::ADMIN_AUTH_FAILURES, "reason" => reason).increment(1);
    tracing::warn!(
        reason,
        method = crate::telemetry::method_label(method),
        "{what}: authentication failed"
    );
}

/// Whether the request came over https (see the module doc).
fn over_https(console: &Console, headers: &HeaderMap) -> bool {
    console.trusts_forwarded_proto()
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

fn set_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let line = format!(
        "{COOKIE}={value}; Path=/admin; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    // The value is hex and digits: always a valid header value.
    HeaderValue::from_str(&line).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A console page's session (and the console): a valid cookie, or the page answers with a
/// redirect to the login form. For the service's own pages too ([`Console::page`]).
#[derive(Debug, Clone)]
pub struct PageSession(pub Session, pub Console);

impl<S: Send + Sync> FromRequestParts<S> for PageSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let Some(console) = parts.extensions.get::<Console>().cloned() else {
            // Outside the console's router: nothing to log in to.
            return Err(StatusCode::NOT_FOUND.into_response());
        };
        match from_headers(&parts.headers, console.token().expose(), Utc::now()) {
            CookieAuth::Valid(s) => Ok(Self(s, console)),
            _ => Err(Redirect::to(&format!("{}/login", super::BASE)).into_response()),
        }
    }
}

/// `GET /admin/ui/login`: the form (or the overview when already logged in).
pub async fn login_form(Extension(console): Extension<Console>, headers: HeaderMap) -> Response {
    if matches!(
        from_headers(&headers, console.token().expose(), Utc::now()),
        CookieAuth::Valid(_)
    ) {
        return Redirect::to(super::BASE).into_response();
    }
    super::html::login_page(StatusCode::OK, None)
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /admin/ui/login`: a session cookie for the right token; 401 and the form again for
/// a wrong one.
pub async fn login(
    Extension(console): Extension<Console>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let token = console.token();
    let presented = form.token.trim();
    let reason = if presented.is_empty() {
        Some("missing")
    } else if !bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
        Some("mismatch")
    } else {
        None
    };
    if let Some(reason) = reason {
        note_failure(reason, &Method::POST, "console login");
        return super::html::login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token."),
        );
    }
    tracing::info!("console: operator logged in");
    let cookie = set_cookie(
        &issue(token.expose(), Utc::now()),
        SESSION_TTL.as_secs(),
        over_https(&console, &headers),
    );
    let mut res = Redirect::to(super::BASE).into_response();
    res.headers_mut().insert(header::SET_COOKIE, cookie);
    super::html::secure(res)
}

/// `POST /admin/ui/logout` (with the CSRF header): clears the cookie. 204.
pub async fn logout(PageSession(session, console): PageSession, headers: HeaderMap) -> Response {
    if !csrf_ok(&headers, &session) {
        note_failure("csrf", &Method::POST, "console logout");
        return StatusCode::FORBIDDEN.into_response();
    }
    tracing::info!(session = %session.id.split('.').next().unwrap_or(""), "console: operator logged out");
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie("", 0, over_https(&console, &headers)),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "an-admin-token-0123456789";

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn a_cookie_checks_under_its_token_only_and_expires() {
        let c = issue(TOKEN, at(0));
        assert!(!c.contains(TOKEN));
        let s = verify(TOKEN, &c, at(60)).unwrap();
        assert_eq!(s.csrf.len(), 64);
        assert_eq!(verify("another-admin-token-0123", &c, at(60)), None);
        let ttl = SESSION_TTL.as_secs() as i64;
        assert!(verify(TOKEN, &c, at(ttl)).is_some());
        assert_eq!(verify(TOKEN, &c, at(ttl + 1)), None);
        // Tampered issue time: the HMAC covers it.
        let (_, rest) = c.split_once('.').unwrap();
        assert_eq!(
            verify(
                TOKEN,
                &format!("{}.{rest}", at(0).timestamp() + 999),
                at(60)
            ),
            None
        );
        for junk in ["", ".", "a.b.c", "x", &"9".repeat(500)] {
            assert_eq!(verify(TOKEN, junk, at(0)), None);
        }
    }

    #[test]
    fn each_session_has_its_own_csrf_token() {
        let a = verify(TOKEN, &issue(TOKEN, at(0)), at(1)).unwrap();
        let b = verify(TOKEN, &issue(TOKEN, at(0)), at(1)).unwrap();
        assert_ne!(a.csrf, b.csrf);
        let mut h = HeaderMap::new();
        h.insert(CSRF_HEADER, HeaderValue::from_str(&a.csrf).unwrap());
        assert!(csrf_ok(&h, &a));
        assert!(!csrf_ok(&h, &b));
        assert!(!csrf_ok(&HeaderMap::new(), &a));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; steadfast_admin=xyz ; b=2"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(from_headers(&h, TOKEN, at(0)), CookieAuth::Invalid);
        assert_eq!(
            from_headers(&HeaderMap::new(), TOKEN, at(0)),
            CookieAuth::Absent
        );
    }
}
