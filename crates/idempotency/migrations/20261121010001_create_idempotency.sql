-- steadfast-idempotency: claim records and de-duplication entries.
-- Times are milliseconds since the Unix epoch, as the stores compare them with the caller's
-- clock (to read one: to_timestamp(expires_at_ms / 1000.0)).

CREATE SEQUENCE IF NOT EXISTS idempotency_fence_seq;

CREATE TABLE IF NOT EXISTS idempotency_records (
    scope          text     NOT NULL,
    key            text     NOT NULL,
    fingerprint    bytea    NOT NULL,
    fence          bigint   NOT NULL,
    -- 0: in flight (expires_at_ms is the lease expiry), 1: completed (the replay expiry)
    state          smallint NOT NULL,
    expires_at_ms  bigint   NOT NULL,
    status         smallint,
    response       bytea,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE INDEX IF NOT EXISTS idempotency_records_expires_idx
    ON idempotency_records (expires_at_ms);

CREATE TABLE IF NOT EXISTS idempotency_dedup (
    id              text   PRIMARY KEY,
    expires_at_ms   bigint NOT NULL,
    processing_ms   bigint
);

CREATE INDEX IF NOT EXISTS idempotency_dedup_expires_idx
    ON idempotency_dedup (expires_at_ms);
