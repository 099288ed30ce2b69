-- steadfast-dlq: ordering groups (SQS FIFO's MessageGroupId). A claim takes a grouped message
-- only while no earlier live message of its group exists; this index answers that probe with
-- the live grouped rows only.
ALTER TABLE dlq_messages ADD COLUMN IF NOT EXISTS group_key text;

CREATE INDEX IF NOT EXISTS dlq_messages_group ON dlq_messages (queue, group_key, id)
    WHERE group_key IS NOT NULL AND state IN ('pending', 'retrying', 'running');
