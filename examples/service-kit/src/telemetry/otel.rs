//! The subscriber: JSON logs always, plus the OpenTelemetry layer and its OTLP exporter when
//! an endpoint is configured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::TelemetrySettings;
use super::format::WithTraceIds;
use crate::Error as TelemetryError;

/// Whether the OpenTelemetry layer is installed. Everything that only matters to traces
/// (extracting or injecting `traceparent`, carriers for the queue) checks it first, so a
/// service without an endpoint pays nothing beyond its logs.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported (the OpenTelemetry layer is installed).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The installed telemetry; keep it until shutdown, then call [`Telemetry::shutdown`] so the
/// last spans are exported.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (an endpoint was configured and this call installed the
    /// subscriber).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now (waits for the export; on a blocking thread, since
    /// the export itself runs on this runtime).
    pub async fn flush(&self) {
        if let Some(provider) = self.provider.clone() {
            let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
        }
    }

    /// Exports what is left and stops the exporter (bounded: a collector that does not answer
    /// does not hold the shutdown).
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = tokio::task::spawn_blocking(move || {
                provider.shutdown_with_timeout(Duration::from_secs(5))
            })
            .await;
        }
    }
}

/// Installs the global subscriber: JSON lines (`RUST_LOG` filters, default `info`), each
/// carrying `trace_id` and `span_id` when a trace is active and the correlation id of the
/// request or message it belongs to; and, when `settings` name an endpoint, the
/// OpenTelemetry layer exporting spans over OTLP/HTTP (protobuf) with parent-based ratio
/// sampling.
///
/// Call it from inside the tokio runtime that will run the service (the exporter runs its
/// requests there). A second call installs nothing (the first subscriber stays) and returns
/// a [`Telemetry`] that exports nothing.
pub fn init(settings: &TelemetrySettings) -> Result<Telemetry, TelemetryError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let provider = match &settings.traces_endpoint {
        Some(url) => Some(provider(settings, url)?),
        None => None,
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("steadfast"))
            // What an operator reads in a trace is the spans' own attributes; thread ids,
            // source locations and busy/idle timings would cost every span for little.
            .with_threads(false)
            .with_location(false)
            .with_tracked_inactivity(false)
            .with_filter(tracing_subscriber::filter::filter_fn(traced))
    });
    // Each layer filters for itself: RUST_LOG quiets the logs, not the traces.
    let installed = tracing_subscriber::registry()
        .with(otel)
        .with(log_layer().with_filter(filter))
        .try_init()
        .is_ok();
    match provider {
        Some(p) if installed => {
            ENABLED.store(true, Ordering::Relaxed);
            Ok(Telemetry { provider: Some(p) })
        }
        Some(p) => {
            let _ = p.shutdown();
            Ok(Telemetry { provider: None })
        }
        None => Ok(Telemetry { provider: None }),
    }
}

/// What goes to OpenTelemetry: spans from `info` up (every span the services and crates
/// make), and events from `warn` up, which become events on their span (the info lines are in
/// the logs, which carry the trace id).
fn traced(meta: &tracing::Metadata<'_>) -> bool {
    let most_verbose = if meta.is_span() {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    *meta.level() <= most_verbose
}

/// The JSON log layer every service writes (see [`WithTraceIds`] for what it adds).
fn log_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let format = tracing_subscriber::fmt::format()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true);
    tracing_subscriber::fmt::layer()
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .event_format(WithTraceIds::new(format))
}

fn provider(settings: &TelemetrySettings, url: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        TelemetryError::Exporter("telemetry::init must run inside a tokio runtime".into())
    })?;
    let client = super::exporter_client::RuntimeClient::new(runtime)
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(super::exporter_client::EXPORT_TIMEOUT)
        .with_http_client(client)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(
            Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build())
}
