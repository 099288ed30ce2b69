-- steadfast-saga: one row per saga (state, lease, fencing token) and its log, one row per entry.
CREATE TABLE saga_instances (
    id               text        PRIMARY KEY,
    name             text        NOT NULL,
    version          integer     NOT NULL,
    input            jsonb       NOT NULL,
    state            text        NOT NULL
                     CHECK (state IN ('running', 'completed', 'compensating', 'compensated',
                                      'failed', 'resolved')),
    -- Grows by one on every claim: a runner's writes carry the fence it claimed with, and
    -- match no row once another runner has claimed the saga.
    fence            bigint      NOT NULL,
    lease_owner      text,
    lease_expires_at timestamptz,
    entry_count      bigint      NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE TABLE saga_entries (
    saga_id text        NOT NULL REFERENCES saga_instances (id) ON DELETE CASCADE,
    seq     bigint      NOT NULL,
    at      timestamptz NOT NULL,
    entry   jsonb       NOT NULL,
    PRIMARY KEY (saga_id, seq)
);

-- Recovery claims: active sagas of one definition by lease expiry. Finished sagas stay out of
-- the index, so claim cost does not grow with them.
CREATE INDEX saga_instances_claim ON saga_instances (name, version, lease_expires_at NULLS FIRST, id)
    WHERE state IN ('running', 'compensating');

-- Operator listings by state, newest first.
CREATE INDEX saga_instances_state ON saga_instances (state, updated_at DESC);
