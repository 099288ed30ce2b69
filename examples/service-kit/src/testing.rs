//! Test support for the services' trace tests (feature `testing`): an OTLP/HTTP receiver that
//! decodes what the exporter sends, and helpers to read the spans it got.
//!
//! ```no_run
//! # async fn demo() {
//! use steadfast_service_kit::testing::{OtlpReceiver, attr};
//! let receiver = OtlpReceiver::start().await;
//! // point the service at `receiver.url()` ([telemetry] otlp_endpoint), run it, then:
//! for (service, span) in receiver.spans() {
//!     println!("{service}: {} {:?}", span.name, attr(&span, "http.route"));
//! }
//! # }
//! ```

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
pub use opentelemetry_proto::tonic::trace::v1::Span;
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use parking_lot::Mutex;
use prost::Message as _;

type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP (protobuf) trace receiver on an ephemeral loopback port, for the life of the
/// test's runtime. It answers 200 to a well-formed export and 400 to anything else.
#[derive(Debug, Clone)]
pub struct OtlpReceiver {
    url: String,
    received: Received,
}

impl OtlpReceiver {
    /// Binds and starts serving.
    ///
    /// # Panics
    /// When no loopback port can be bound (a test set-up failure).
    pub async fn start() -> Self {
        let received = Received::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the OTLP receiver");
        let url = format!("http://{}", listener.local_addr().expect("bound address"));
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(received.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, received }
    }

    /// The base URL to configure as the OTLP endpoint (the exporter appends `/v1/traces`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every span received so far, with its resource's `service.name`, in arrival order.
    pub fn spans(&self) -> Vec<(String, Span)> {
        self.received.lock().clone()
    }
}

async fn export(State(received): State<Received>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = received.lock();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(text)
            .unwrap_or_default();
        for ss in rs.scope_spans {
            received.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
        }
    }
    StatusCode::OK
}

fn text(value: &AnyValue) -> String {
    match value {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// A span attribute's value as text (strings as they are, numbers and booleans printed).
pub fn attr(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(text(value))
}

/// A span's kind (`Unspecified` for a value the proto does not know).
pub fn kind(span: &Span) -> SpanKind {
    SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified)
}

/// A trace or span id as the lowercase hex a `traceparent` carries.
pub fn hex_id(bytes: &[u8]) -> String {
    hex::encode(bytes)
}
