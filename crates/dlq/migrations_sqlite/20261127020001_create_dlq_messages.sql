-- steadfast-dlq on SQLite: the Postgres schema (migrations/) in one step, with SQLite's types.
-- Ids, tokens and keys are text (UUIDs hyphenated, lowercase, so text order is UUID order);
-- times are integer microseconds since the Unix epoch from the store's clock (never SQLite's
-- own clock), the precision Postgres keeps; payloads and error histories are JSON text.
CREATE TABLE dlq_messages (
    id               TEXT    PRIMARY KEY NOT NULL,
    queue            TEXT    NOT NULL,
    dedup_key        TEXT,
    payload          TEXT    NOT NULL,
    priority         INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 9),
    state            TEXT    NOT NULL
                     CHECK (state IN ('pending', 'running', 'retrying', 'dead', 'done')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    -- When the message is next claimable: its due time, or for 'running' its lease expiry.
    run_at           INTEGER NOT NULL,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    errors           TEXT    NOT NULL DEFAULT '[]',
    correlation_id   TEXT,
    group_key        TEXT,
    waiting_since    INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

-- A dedup key is unique per queue while its message is not done (the store checks first, in
-- the same write transaction; this index is the backstop).
CREATE UNIQUE INDEX dlq_messages_dedup ON dlq_messages (queue, dedup_key)
    WHERE dedup_key IS NOT NULL AND state <> 'done';

-- Claims: the live rows only, in claim order.
CREATE INDEX dlq_messages_claim ON dlq_messages (queue, priority, run_at, id)
    WHERE state IN ('pending', 'retrying', 'running');

-- Running rows on their last attempt, by lease expiry: every claim buries the lapsed ones.
CREATE INDEX dlq_messages_doomed ON dlq_messages (queue, run_at)
    WHERE state = 'running' AND attempts >= max_attempts;

-- The group probe of a claim: the live grouped rows only.
CREATE INDEX dlq_messages_group ON dlq_messages (queue, group_key, id)
    WHERE group_key IS NOT NULL AND state IN ('pending', 'retrying', 'running');

-- Operator listings of dead letters, retention of done rows, remembered done keys.
CREATE INDEX dlq_messages_dead ON dlq_messages (queue, updated_at) WHERE state = 'dead';
CREATE INDEX dlq_messages_done ON dlq_messages (updated_at) WHERE state = 'done';
CREATE INDEX dlq_messages_done_key ON dlq_messages (queue, dedup_key)
    WHERE state = 'done' AND dedup_key IS NOT NULL;
