//! RFC 9457 problem details (`application/problem+json`) for every error response.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// The media type of problem details.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// An error response: status, a short title, and a detail for the caller. Never carries
/// secrets or message bodies.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the problem type (`about:blank` when the status says it all).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened with this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip)]
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem with `status`, its canonical reason as the title.
    pub fn new(status: StatusCode) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            headers: Vec::new(),
        }
    }

    /// Adds a detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets a problem type URI (`https://steadfast.dev/problems/...` style, or a tag URI).
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Adds a response header (e.g. `Retry-After`).
    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        for (k, v) in self.headers {
            res.headers_mut().insert(k, v);
        }
        res
    }
}
