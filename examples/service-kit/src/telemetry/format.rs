//! The log line format: the JSON lines of `tracing-subscriber`, plus the ids that tie a line
//! to its trace and its request.

use std::fmt::{self, Write as _};

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The field every request's and message's span carries.
const CORRELATION_KEY: &str = "\"correlation_id\":";

/// Wraps a JSON event format and adds, at the top level of each line:
/// - `trace_id` and `span_id` of the span the event happened in, when it is part of a trace
///   (OpenTelemetry on and the trace sampled or not: ids exist either way);
/// - `correlation_id`, when the line's own span does not carry it but an enclosing one does
///   (a line logged inside an HTTP client span or a saga step span still names its request).
#[derive(Debug)]
pub(crate) struct WithTraceIds<F> {
    inner: F,
}

impl<F> WithTraceIds<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let mut extra = String::new();
        if super::otel::enabled() {
            // The OpenTelemetry layer makes an entered span's context current on this thread.
            let cx = opentelemetry::Context::current();
            let sc = cx.span().span_context().clone();
            if sc.is_valid() {
                let _ = write!(
                    extra,
                    ",\"trace_id\":\"{}\",\"span_id\":\"{}\"",
                    sc.trace_id(),
                    sc.span_id()
                );
            }
        }
        if !line.contains(CORRELATION_KEY) {
            if let Some(id) = inherited_correlation_id(ctx) {
                let _ = write!(extra, ",{CORRELATION_KEY}\"{id}\"");
            }
        }
        let body = line.trim_end_matches('\n');
        match body.strip_suffix('}') {
            Some(open) if !extra.is_empty() => {
                writer.write_str(open)?;
                writer.write_str(&extra)?;
                writer.write_str("}\n")
            }
            _ => writer.write_str(&line),
        }
    }
}

/// The (already JSON-escaped) correlation id of the nearest enclosing span that has one.
fn inherited_correlation_id<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<String>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    for span in ctx.event_scope()? {
        let ext = span.extensions();
        let Some(fields) = ext.get::<FormattedFields<N>>() else {
            continue;
        };
        let Some(start) = fields.fields.find(CORRELATION_KEY) else {
            continue;
        };
        let rest = fields.fields[start + CORRELATION_KEY.len()..].strip_prefix('"')?;
        // The value ends at the first quote not escaped by a backslash.
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => return Some(rest[..i].to_owned()),
                _ => escaped = false,
            }
        }
        return None;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A line logged in a span nested under the request's names the request's correlation id
    /// (escaped as the JSON needs); a line in the request's own span has it once.
    #[test]
    fn nested_lines_inherit_the_correlation_id() {
        let lines = Lines::default();
        let writer = lines.clone();
        let format = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false);
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(WithTraceIds::new(format))
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request", correlation_id = "abc\"q");
            let _r = request.enter();
            tracing::info!("in the request");
            let inner = tracing::info_span!("http.client", url = "http://x");
            let _i = inner.enter();
            tracing::info!("in the client span");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect(l))
            .collect();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0]["span"]["correlation_id"], "abc\"q");
        assert!(parsed[0].get("correlation_id").is_none(), "{}", parsed[0]);
        assert_eq!(parsed[1]["correlation_id"], "abc\"q");
        assert_eq!(parsed[1]["span"]["name"], "http.client");
        // OpenTelemetry is off here: no trace ids.
        assert!(parsed[1].get("trace_id").is_none());
    }
}
