-- steadfast-dlq: the producer's trace context (opaque, e.g. a W3C traceparent), kept with each
-- message so that every attempt can join the producer's trace.
ALTER TABLE dlq_messages ADD COLUMN IF NOT EXISTS trace_context text;
