-- The payments ledger on SQLite (the single-instance default). Amounts are integers in minor
-- units; times are RFC 3339 text. The CHECKs are the last line of defence: the ledger's
-- statements already refuse any movement that would break them.
CREATE TABLE IF NOT EXISTS payments_accounts (
    id          TEXT PRIMARY KEY,
    currency    TEXT NOT NULL,
    balance     INTEGER NOT NULL DEFAULT 0,
    reserved    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT payments_accounts_reserved_nonnegative CHECK (reserved >= 0),
    CONSTRAINT payments_accounts_reserved_within_balance CHECK (reserved <= balance)
) STRICT;

CREATE TABLE IF NOT EXISTS payments_transfers (
    id            BLOB PRIMARY KEY,
    from_account  TEXT NOT NULL REFERENCES payments_accounts (id),
    to_account    TEXT NOT NULL REFERENCES payments_accounts (id),
    amount        INTEGER NOT NULL CHECK (amount > 0),
    currency      TEXT NOT NULL,
    created_at    TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS payments_deposits (
    transaction_id  TEXT PRIMARY KEY,
    account         TEXT NOT NULL REFERENCES payments_accounts (id),
    amount          INTEGER NOT NULL CHECK (amount > 0),
    currency        TEXT NOT NULL,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TABLE IF NOT EXISTS payments_payouts (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    account          TEXT NOT NULL REFERENCES payments_accounts (id),
    msisdn           TEXT NOT NULL,
    amount           INTEGER NOT NULL CHECK (amount > 0),
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    provider_result  TEXT CHECK (provider_result IN ('SUCCESSFUL', 'FAILED')),
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE INDEX IF NOT EXISTS payments_payouts_pending
    ON payments_payouts (seq) WHERE status = 'pending';
