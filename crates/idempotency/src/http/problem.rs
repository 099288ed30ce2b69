//! `application/problem+json` answers with stable codes.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// The stable codes the layer answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemCode {
    /// 400: the route requires an `Idempotency-Key` header.
    MissingKey,
    /// 400: the key does not follow the key rules.
    InvalidKey,
    /// 400: the request body could not be read.
    InvalidBody,
    /// 409: the first request with this key is still running.
    InFlight,
    /// 413: the request body exceeds the limit.
    BodyTooLarge,
    /// 422: the key was used with a different request.
    KeyReused,
    /// 409: the request with this key already ran, but its response exceeded
    /// `max_response_bytes` and was not stored: it is neither replayed nor run again.
    ResponseNotReplayable,
    /// 500: the handler's response body could not be read.
    ResponseBody,
    /// 503: the idempotency store is unavailable (fail closed).
    StoreUnavailable,
}

impl ProblemCode {
    /// The code string (`missing_idempotency_key`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemCode::MissingKey => "missing_idempotency_key",
            ProblemCode::InvalidKey => "invalid_idempotency_key",
            ProblemCode::InvalidBody => "invalid_request_body",
            ProblemCode::InFlight => "request_in_flight",
            ProblemCode::BodyTooLarge => "request_body_too_large",
            ProblemCode::KeyReused => "idempotency_key_reused",
            ProblemCode::ResponseNotReplayable => "response_not_replayable",
            ProblemCode::ResponseBody => "response_body_error",
            ProblemCode::StoreUnavailable => "idempotency_store_unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ProblemCode::MissingKey | ProblemCode::InvalidKey | ProblemCode::InvalidBody => {
                StatusCode::BAD_REQUEST
            }
            ProblemCode::InFlight | ProblemCode::ResponseNotReplayable => StatusCode::CONFLICT,
            ProblemCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemCode::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemCode::ResponseBody => StatusCode::INTERNAL_SERVER_ERROR,
            ProblemCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn title(self) -> &'static str {
        match self {
            ProblemCode::MissingKey => "Idempotency-Key header required",
            ProblemCode::InvalidKey => "Invalid Idempotency-Key",
            ProblemCode::InvalidBody => "Unreadable request body",
            ProblemCode::InFlight => "A request with this Idempotency-Key is in progress",
            ProblemCode::BodyTooLarge => "Request body too large",
            ProblemCode::KeyReused => "Idempotency-Key reused with a different request",
            ProblemCode::ResponseNotReplayable => {
                "The request with this Idempotency-Key completed; its response was too large to replay"
            }
            ProblemCode::ResponseBody => "Response body could not be read",
            ProblemCode::StoreUnavailable => "Idempotency store unavailable",
        }
    }
}

/// A problem answer: code, human detail, optional `Retry-After`.
#[derive(Debug, Clone)]
pub struct Problem {
    code: ProblemCode,
    detail: String,
    retry_after: Option<Duration>,
}

impl Problem {
    /// A problem with a detail message.
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Problem {
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// Add `Retry-After` (whole seconds, rounded up, at least 1).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The code.
    pub fn code(&self) -> ProblemCode {
        self.code
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "type": format!("urn:steadfast:problem:{}", self.code.as_str()),
            "title": self.code.title(),
            "status": self.code.status().as_u16(),
            "detail": self.detail,
            "code": self.code.as_str(),
        })
    }

    /// Render as a response.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let body = Bytes::from(self.body().to_string());
        let mut response = Response::new(B::from(body));
        *response.status_mut() = self.code.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(after) = self.retry_after {
            let secs = after.as_millis().div_ceil(1000).max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
        }
        response
    }
}
