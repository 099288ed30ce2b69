-- steadfast-saga on SQLite: the Postgres schema (migrations/) with SQLite's types. Times are
-- integer microseconds since the Unix epoch from the store's clock; inputs and entries are
-- JSON text.
CREATE TABLE saga_instances (
    id               TEXT    PRIMARY KEY NOT NULL,
    name             TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    input            TEXT    NOT NULL,
    state            TEXT    NOT NULL
                     CHECK (state IN ('running', 'completed', 'compensating', 'compensated',
                                      'failed', 'resolved')),
    -- Grows by one on every claim: a runner's writes carry the fence it claimed with, and
    -- match no row once another runner has claimed the saga.
    fence            INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    entry_count      INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

-- A saga's entries, in order (no foreign key: a saga is never deleted, and entries are only
-- written in the transaction that updates their saga's row).
CREATE TABLE saga_entries (
    saga_id TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    entry   TEXT    NOT NULL,
    PRIMARY KEY (saga_id, seq)
) STRICT;

-- Recovery claims: active sagas of one definition by lease expiry (NULLs sort first).
CREATE INDEX saga_instances_claim ON saga_instances (name, version, lease_expires_at, id)
    WHERE state IN ('running', 'compensating');

-- Operator listings by state, newest first.
CREATE INDEX saga_instances_state ON saga_instances (state, updated_at DESC);
