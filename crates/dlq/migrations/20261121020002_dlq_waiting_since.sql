-- steadfast-dlq: when a message started waiting (its first retryable failure or snooze since
-- it was enqueued or replayed); a queue's horizon counts from here. NULL until then, and again
-- after an ack or a replay. Nullable: existing rows read as "not waiting".
ALTER TABLE dlq_messages ADD COLUMN IF NOT EXISTS waiting_since timestamptz;
