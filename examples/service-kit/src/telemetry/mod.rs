//! JSON-lines logs (tracing) and the per-request correlation id.
//!
//! The correlation id comes from `X-Request-Id` when the caller sent a sane one, else a new
//! UUID v7; it is echoed in the response, put in the request's span (so every log line of the
//! request carries it), stored with each queued message, and set on the worker's span for it.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, Method};
use tracing::Instrument;

/// The header carrying the correlation id.
pub const REQUEST_ID: &str = "x-request-id";

/// The correlation id of the current request (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId(pub String);

/// Installs the JSON subscriber (`RUST_LOG` filters, default `info`). Safe to call twice: the
/// second call does nothing.
pub fn init() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .try_init();
}

/// Accepts a caller's id when it is 1-128 visible ASCII characters; anything else (which could
/// forge log lines or carry junk) is replaced.
pub fn accept_request_id(value: Option<&HeaderValue>) -> Option<String> {
    let v = value?.to_str().ok()?.trim();
    (!v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| v.to_owned())
}

/// The most bytes of a request path written to a log line. A path is request-controlled (up to
/// hyper's URI limit, about 64 KiB); the routes this service has are far shorter, and a log
/// line per request must not grow with what an anonymous caller sends.
pub const LOGGED_PATH_BYTES: usize = 256;

/// `path` cut to at most [`LOGGED_PATH_BYTES`] (on a character boundary), with `…` when cut.
pub fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= LOGGED_PATH_BYTES {
        return path.into();
    }
    let mut end = LOGGED_PATH_BYTES;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end]).into()
}

/// Middleware: picks the correlation id, runs the request in a span carrying it, echoes it.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = accept_request_id(request.headers().get(REQUEST_ID))
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let span = tracing::info_span!(
        "request",
        correlation_id = %id,
        // The method as its metric label and the path bounded: both come from the caller.
        method = method_label(request.method()),
        path = %logged_path(request.uri().path()),
    );
    let mut res = next.run(request).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

/// The `method` label of a request: one of the nine standard methods, else `other`. hyper
/// accepts any token as a method, and a label taken verbatim from the request would let an
/// anonymous client create a series per request (600 requests with 100 KB methods once grew
/// `/metrics` to 67 MB, never freed).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn method_labels_are_standard_or_other() {
        for m in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
        ] {
            assert_eq!(method_label(&Method::from_bytes(m.as_bytes()).unwrap()), m);
        }
        for odd in ["get", "PURGE", "BREW", &"X".repeat(10_000)] {
            assert_eq!(
                method_label(&Method::from_bytes(odd.as_bytes()).unwrap()),
                "other"
            );
        }
    }
    #[test]
    fn accepts_sane_ids_only() {
        let ok = HeaderValue::from_static("req-123_abc");
        assert_eq!(accept_request_id(Some(&ok)).as_deref(), Some("req-123_abc"));
        let spaced = HeaderValue::from_static("a b");
        assert_eq!(accept_request_id(Some(&spaced)), None);
        let long = HeaderValue::from_str(&"x".repeat(129)).unwrap();
        assert_eq!(accept_request_id(Some(&long)), None);
        assert_eq!(accept_request_id(None), None);
    }

    #[test]
    fn long_paths_are_cut_for_the_log() {
        assert_eq!(logged_path("/webhook"), "/webhook");
        let long = format!("/{}", "é".repeat(1000));
        let cut = logged_path(&long);
        assert!(cut.len() <= LOGGED_PATH_BYTES + "…".len());
        assert!(cut.ends_with('…'));
    }

    proptest! {
        #[test]
        fn accepted_ids_are_printable(s in "\\PC{0,140}") {
            if let Ok(v) = HeaderValue::from_str(&s) {
                if let Some(id) = accept_request_id(Some(&v)) {
                    prop_assert!(id.bytes().all(|b| b.is_ascii_graphic()) && id.len() <= 128);
                }
            }
        }
    }
}
