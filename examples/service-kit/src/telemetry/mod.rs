//! Logs and traces: JSON-lines logs with the per-request correlation id, and OpenTelemetry
//! traces exported over OTLP when an endpoint is configured.
//!
//! The correlation id comes from `X-Request-Id` when the caller sent a sane one, else a new
//! UUID v7; it is echoed in the response, put in the request's span (so every log line of the
//! request carries it), stored with each queued message, and set on the worker's span for it.
//!
//! Traces ([`init`] with an endpoint): the request middleware makes a server span continuing
//! the caller's `traceparent`; [`client::send`] makes client spans and sends `traceparent`
//! on; [`propagation`] turns a span's context into the string stored with a queued message
//! and back. The crates (`steadfast-dlq`, `steadfast-saga`) only emit `tracing` spans; this
//! module is the one place that knows OpenTelemetry.

pub mod client;
mod exporter_client;
mod format;
mod messaging;
mod otel;
pub mod propagation;
mod server;
mod settings;

use http::{HeaderValue, Method};

pub use messaging::send_span;
pub use otel::{Telemetry, enabled, init};
pub use server::middleware;
pub use settings::{
    DEFAULT_SAMPLE_RATIO, ENV_KEYS, ENV_OTLP_ENDPOINT, ENV_OTLP_TRACES_ENDPOINT, ENV_SAMPLER_ARG,
    ENV_SERVICE_NAME, RawTelemetry, TelemetrySettings,
};

/// The header carrying the correlation id.
pub const REQUEST_ID: &str = "x-request-id";

/// The correlation id of the current request (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId(pub String);

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
