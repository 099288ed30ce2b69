-- steadfast-dlq: dedup keys of done messages, for queues that remember them (an enqueue of a
-- retained done message's key is a duplicate of it).
CREATE INDEX IF NOT EXISTS dlq_messages_done_key ON dlq_messages (queue, dedup_key)
    WHERE state = 'done' AND dedup_key IS NOT NULL;
