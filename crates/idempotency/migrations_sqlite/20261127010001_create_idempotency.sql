-- steadfast-idempotency on SQLite: the Postgres schema (migrations/) with SQLite's types.
-- Times are milliseconds since the Unix epoch from the caller's clock, as in Postgres.

-- Fencing tokens: one counter row, incremented inside each claim's write transaction.
CREATE TABLE idempotency_fence (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
) STRICT;
INSERT INTO idempotency_fence (id, value) VALUES (1, 0);

CREATE TABLE idempotency_records (
    scope          TEXT    NOT NULL,
    key            TEXT    NOT NULL,
    fingerprint    BLOB    NOT NULL,
    fence          INTEGER NOT NULL,
    -- 0: in flight (expires_at_ms is the lease expiry), 1: completed (the replay expiry)
    state          INTEGER NOT NULL,
    expires_at_ms  INTEGER NOT NULL,
    status         INTEGER,
    response       BLOB,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT;

CREATE INDEX idempotency_records_expires_idx ON idempotency_records (expires_at_ms);

CREATE TABLE idempotency_dedup (
    id              TEXT    PRIMARY KEY NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    processing_ms   INTEGER
) STRICT;

CREATE INDEX idempotency_dedup_expires_idx ON idempotency_dedup (expires_at_ms);
