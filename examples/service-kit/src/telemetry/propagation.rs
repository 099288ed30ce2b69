//! W3C trace context across process boundaries: HTTP headers in and out, and the string
//! stored with a queued message.
//!
//! The queue carrier is the `traceparent` value, followed by `;` and the `tracestate` value
//! when there is one (`00-<trace id>-<span id>-01;vendor=value`). `;` appears in neither
//! header's grammar, so the split is unambiguous; the dlq crate stores it opaquely.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

/// The most bytes of `tracestate` carried into the queue: the dlq bounds its carrier at 1024
/// bytes, and a `tracestate` that would not fit is dropped (the trace itself still links up).
const MAX_TRACESTATE: usize = 1024 - 56;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The remote context an incoming request carries (`traceparent`, `tracestate`); an empty
/// context when it carries none or a malformed one.
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Sets `traceparent` (and `tracestate`) for `span` on outgoing `headers`; nothing when the
/// span has no trace (OpenTelemetry off, or the span filtered out).
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if !super::otel::enabled() {
        return;
    }
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

/// The queue carrier of `span`'s context (see the module docs), or `None` when it has no
/// trace.
pub fn carrier(span: &tracing::Span) -> Option<String> {
    if !super::otel::enabled() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut fields);
    let parent = fields.remove(TRACEPARENT)?;
    Some(match fields.remove(TRACESTATE) {
        Some(state) if !state.is_empty() && state.len() <= MAX_TRACESTATE => {
            format!("{parent};{state}")
        }
        _ => parent,
    })
}

/// The context a queue carrier holds; `None` when it is malformed (it is read back from a
/// store an operator can edit: never trusted to parse).
pub fn from_carrier(carrier: &str) -> Option<Context> {
    let (parent, state) = match carrier.split_once(';') {
        Some((p, s)) => (p, Some(s)),
        None => (carrier, None),
    };
    let mut fields: HashMap<String, String> = HashMap::new();
    fields.insert(TRACEPARENT.to_owned(), parent.trim().to_owned());
    if let Some(s) = state {
        fields.insert(TRACESTATE.to_owned(), s.trim().to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&fields);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Continues the trace of a queue carrier in `span`, which must not have been entered yet:
/// the stored context becomes its parent, and a link too (the messaging conventions' creation
/// context link, which backends that draw links show). Nothing happens for a missing or
/// malformed carrier, or with OpenTelemetry off.
pub fn continue_from_carrier(span: &tracing::Span, carrier: Option<&str>) {
    if !super::otel::enabled() {
        return;
    }
    let Some(cx) = carrier.and_then(from_carrier) else {
        return;
    };
    span.add_link(cx.span().span_context().clone());
    // Fails only when the span is disabled or already started, where nothing can be done.
    let _ = span.set_parent(cx);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carriers_round_trip_and_junk_is_refused() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let cx = from_carrier(tp).expect("valid");
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        assert!(sc.is_sampled() && sc.is_remote());
        let with_state = from_carrier(&format!("{tp};vendor=abc")).expect("valid");
        assert_eq!(
            with_state.span().span_context().trace_state().header(),
            "vendor=abc"
        );
        for junk in [
            "",
            ";",
            "00-zz-yy-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "not a trace",
            &"x".repeat(2000),
        ] {
            assert!(from_carrier(junk).is_none(), "{junk:?}");
        }
    }

    #[test]
    fn headers_without_a_trace_extract_nothing() {
        let cx = extract(&http::HeaderMap::new());
        assert!(!cx.span().span_context().is_valid());
        let mut h = http::HeaderMap::new();
        h.insert(TRACEPARENT, http::HeaderValue::from_static("garbage"));
        assert!(!extract(&h).span().span_context().is_valid());
    }
}
