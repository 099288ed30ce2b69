-- Instances of steadfast-state-machine, one row per key (e.g. a WhatsApp sender).
CREATE TABLE IF NOT EXISTS state_machine_snapshots (
    key         TEXT        PRIMARY KEY,
    -- Optimistic concurrency: 1 after the first save, +1 on each save.
    version     BIGINT      NOT NULL CHECK (version > 0),
    -- When the instance's next timeout falls due; NULL when its state has none.
    due_at      TIMESTAMPTZ,
    instance    JSONB       NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The sweeper's query: due_at <= now ORDER BY due_at.
CREATE INDEX IF NOT EXISTS state_machine_snapshots_due_at
    ON state_machine_snapshots (due_at)
    WHERE due_at IS NOT NULL;
