-- The payments ledger. Tables are unqualified: the connection's search_path picks the schema.
-- The CHECKs are the last line of defence: the service's statements already refuse any
-- movement that would break them.
CREATE TABLE IF NOT EXISTS payments_accounts (
    id          TEXT PRIMARY KEY,
    currency    TEXT NOT NULL,
    balance     BIGINT NOT NULL DEFAULT 0,
    reserved    BIGINT NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT payments_accounts_reserved_nonnegative CHECK (reserved >= 0),
    CONSTRAINT payments_accounts_reserved_within_balance CHECK (reserved <= balance)
);

CREATE TABLE IF NOT EXISTS payments_transfers (
    id            UUID PRIMARY KEY,
    from_account  TEXT NOT NULL REFERENCES payments_accounts (id),
    to_account    TEXT NOT NULL REFERENCES payments_accounts (id),
    amount        BIGINT NOT NULL CHECK (amount > 0),
    currency      TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS payments_deposits (
    transaction_id  TEXT PRIMARY KEY,
    account         TEXT NOT NULL REFERENCES payments_accounts (id),
    amount          BIGINT NOT NULL CHECK (amount > 0),
    currency        TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS payments_payouts (
    id               TEXT PRIMARY KEY,
    seq              BIGSERIAL NOT NULL,
    account          TEXT NOT NULL REFERENCES payments_accounts (id),
    msisdn           TEXT NOT NULL,
    amount           BIGINT NOT NULL CHECK (amount > 0),
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    provider_result  TEXT CHECK (provider_result IN ('SUCCESSFUL', 'FAILED')),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS payments_payouts_pending
    ON payments_payouts (seq) WHERE status = 'pending';
