//! Queue spans on the producer side (the consumer's `dlq.process` span is the dlq worker's
//! own; [`propagation::continue_from_carrier`](super::propagation::continue_from_carrier)
//! continues the trace in it).

use tracing::field::Empty;

/// The span of an enqueue into `destination` (an OpenTelemetry messaging "send" span, kind
/// producer, named `send <destination>` when traces are on), and the carrier of its context
/// to store with each message enqueued under it (`None` with traces off). Run the write in
/// the span; record `messaging.batch.message_count` for a batch, and `otel.status_code =
/// "error"` when the write fails.
pub fn send_span(destination: &str, conversation_id: &str) -> (tracing::Span, Option<String>) {
    let span = tracing::info_span!(
        "dlq.send",
        otel.name = Empty,
        otel.kind = "producer",
        otel.status_code = Empty,
        messaging.system = "steadfast_dlq",
        messaging.operation.type = "send",
        messaging.operation.name = "send",
        messaging.destination.name = destination,
        messaging.batch.message_count = Empty,
        messaging.message.conversation_id = conversation_id,
    );
    if !super::otel::enabled() {
        return (span, None);
    }
    span.record("otel.name", format!("send {destination}"));
    let carrier = super::propagation::carrier(&span);
    (span, carrier)
}
