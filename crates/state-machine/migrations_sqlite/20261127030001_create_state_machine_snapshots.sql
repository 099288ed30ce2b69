-- steadfast-state-machine on SQLite: the Postgres schema (migrations/) with SQLite's types.
-- Times are integer microseconds since the Unix epoch (the precision Postgres keeps); the
-- instance is JSON text.
CREATE TABLE state_machine_snapshots (
    key         TEXT    PRIMARY KEY NOT NULL,
    -- Optimistic concurrency: 1 after the first save, +1 on each save.
    version     INTEGER NOT NULL CHECK (version > 0),
    -- When the instance's next timeout falls due; NULL when its state has none.
    due_at      INTEGER,
    instance    TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

-- The sweeper's query: due_at <= now ORDER BY due_at.
CREATE INDEX state_machine_snapshots_due_at ON state_machine_snapshots (due_at, key)
    WHERE due_at IS NOT NULL;
-- Retention (`prune_idle`): instances not saved since a cutoff, oldest first.
CREATE INDEX state_machine_snapshots_updated_at ON state_machine_snapshots (updated_at);
