-- steadfast-dlq: the running rows on their last attempt, by lease expiry. Every claim buries
-- those whose lease lapsed; without this index that search scanned every live row of the
-- queue on every claim. It holds only messages in flight on their last attempt.
CREATE INDEX IF NOT EXISTS dlq_messages_doomed ON dlq_messages (queue, run_at)
    WHERE state = 'running' AND attempts >= max_attempts;
