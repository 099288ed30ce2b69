-- Retention (`prune_idle`): instances not saved since a cutoff, oldest first.
CREATE INDEX IF NOT EXISTS state_machine_snapshots_updated_at
    ON state_machine_snapshots (updated_at);
