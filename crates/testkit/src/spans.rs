//! A `tracing` layer that records every span with its parent and fields, for tests that assert
//! which spans a crate emits (names, attributes, nesting) without an exporter.
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt;
//! let capture = steadfast_testkit::spans::SpanCapture::default();
//! let _guard =
//!     tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
//! tracing::info_span!("outer").in_scope(|| {
//!     tracing::info_span!("inner", attempt = 1).in_scope(|| {});
//! });
//! let spans = capture.spans();
//! let (outer, _) = spans.iter().find(|(_, s)| s.name == "outer").unwrap();
//! let (_, inner) = spans.iter().find(|(_, s)| s.name == "inner").unwrap();
//! assert_eq!(inner.parent, Some(*outer));
//! assert_eq!(inner.fields["attempt"], "1");
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// A span as the subscriber saw it.
#[derive(Debug, Clone, Default)]
pub struct CapturedSpan {
    /// The span's name.
    pub name: String,
    /// The id of its parent span, if any.
    pub parent: Option<u64>,
    /// Every field recorded at creation or later, as text (strings without quotes).
    pub fields: HashMap<String, String>,
}

/// The layer; clones share one record. Spans are kept in creation order, with the id the
/// subscriber gave them (ids of closed spans can be reused: a later record is a new span).
#[derive(Debug, Clone, Default)]
pub struct SpanCapture(Arc<Mutex<Vec<(u64, CapturedSpan)>>>);

impl SpanCapture {
    /// Every span seen so far, in creation order, with its subscriber id.
    pub fn spans(&self) -> Vec<(u64, CapturedSpan)> {
        self.0.lock().clone()
    }
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> tracing_subscriber::Layer<S> for SpanCapture
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut seen = CapturedSpan {
            name: attrs.metadata().name().to_owned(),
            parent: ctx
                .span(id)
                .and_then(|s| s.parent())
                .map(|p| p.id().into_u64()),
            ..CapturedSpan::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        self.0.lock().push((id.into_u64(), seen));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        // The latest span with this id: an id is only reused after its span closed.
        if let Some((_, seen)) = self
            .0
            .lock()
            .iter_mut()
            .rev()
            .find(|(i, _)| *i == id.into_u64())
        {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}
