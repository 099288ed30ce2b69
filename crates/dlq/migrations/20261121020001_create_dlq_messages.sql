-- steadfast-dlq: one table holds every message of every queue, in every state.
CREATE TABLE dlq_messages (
    id               uuid        PRIMARY KEY,
    queue            text        NOT NULL,
    dedup_key        text,
    payload          jsonb       NOT NULL,
    priority         smallint    NOT NULL CHECK (priority BETWEEN 0 AND 9),
    state            text        NOT NULL
                     CHECK (state IN ('pending', 'running', 'retrying', 'dead', 'done')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer     NOT NULL CHECK (max_attempts >= 1),
    -- When the message is next claimable: its due time, or for 'running' its lease expiry, so
    -- that one index serves both due messages and expired leases.
    run_at           timestamptz NOT NULL,
    lease_token      uuid,
    lease_expires_at timestamptz,
    errors           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    correlation_id   text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- A dedup key is unique per queue while its message is not done.
CREATE UNIQUE INDEX dlq_messages_dedup ON dlq_messages (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND state <> 'done';

-- Claims: the live rows only, in claim order. Done and dead rows stay out of this index, so
-- claim cost does not grow with them.
CREATE INDEX dlq_messages_claim ON dlq_messages (queue, priority, run_at, id)
    WHERE state IN ('pending', 'retrying', 'running');

-- Operator listings of dead letters, and retention of done rows.
CREATE INDEX dlq_messages_dead ON dlq_messages (queue, updated_at) WHERE state = 'dead';
CREATE INDEX dlq_messages_done ON dlq_messages (updated_at) WHERE state = 'done';

-- Every claim and settle rewrites a row: vacuum early so dead tuples do not pile up.
ALTER TABLE dlq_messages SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02
);
