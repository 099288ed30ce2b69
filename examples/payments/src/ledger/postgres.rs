//! The Postgres ledger: one transaction per operation, rows locked in id order (so two
//! transfers in opposite directions cannot deadlock), and the balance check inside the debit
//! statement itself.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::{
    Account, Ledger, LedgerError, NewDeposit, NewPayout, NewTransfer, Payout, PayoutStatus,
    ProviderResult, Totals, Transfer,
};
use crate::money::Currency;

/// Postgres's "numeric value out of range" (a `bigint` credit that would overflow).
const OUT_OF_RANGE: &str = "22003";

/// The Postgres [`Ledger`]. Run [`PostgresLedger::migrate`] once at start-up.
#[derive(Debug, Clone)]
pub struct PostgresLedger {
    pool: PgPool,
}

const PAYOUT_COLUMNS: &str = "id, account, msisdn, amount, currency, status, provider_result";

fn account_row(row: &PgRow) -> Result<Account, LedgerError> {
    let currency: String = row.try_get("currency")?;
    Ok(Account {
        id: row.try_get("id")?,
        currency: Currency::parse(&currency)
            .map_err(|e| LedgerError::Store(format!("stored currency: {e}")))?,
        balance: row.try_get("balance")?,
        reserved: row.try_get("reserved")?,
    })
}

fn payout_row(row: &PgRow) -> Result<Payout, LedgerError> {
    let corrupt = |what: &str| LedgerError::Store(format!("stored payout has a bad {what}"));
    let currency: String = row.try_get("currency")?;
    let status: String = row.try_get("status")?;
    let result: Option<String> = row.try_get("provider_result")?;
    Ok(Payout {
        id: row.try_get("id")?,
        account: row.try_get("account")?,
        msisdn: row.try_get("msisdn")?,
        amount: row.try_get("amount")?,
        currency: Currency::parse(&currency).map_err(|_| corrupt("currency"))?,
        status: PayoutStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        provider_result: match result {
            None => None,
            Some(r) => Some(ProviderResult::parse(&r).ok_or_else(|| corrupt("provider_result"))?),
        },
    })
}

fn check_currency(account: &Account, currency: &Currency) -> Result<(), LedgerError> {
    if &account.currency == currency {
        Ok(())
    } else {
        Err(LedgerError::CurrencyMismatch {
            account: account.id.clone(),
            expected: account.currency.clone(),
            got: currency.clone(),
        })
    }
}

fn overflow_or(e: sqlx::Error, account: &str) -> LedgerError {
    match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(OUT_OF_RANGE) => {
            LedgerError::Overflow(account.to_owned())
        }
        _ => e.into(),
    }
}

impl PostgresLedger {
    /// A ledger on `pool`.
    pub fn new(pool: PgPool) -> Self {
        PostgresLedger { pool }
    }

    /// Applies the ledger's migrations (`examples/payments/migrations`, versions
    /// `2026112717xxxx`); other crates' migrations in the same table are left alone.
    pub async fn migrate(pool: &PgPool) -> Result<(), LedgerError> {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        migrator
            .run(pool)
            .await
            .map_err(|e| LedgerError::Store(e.to_string()))
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Locks `ids` in id order and returns them, by id.
    async fn lock_accounts(
        tx: &mut Transaction<'_, Postgres>,
        ids: &[&str],
    ) -> Result<Vec<Account>, LedgerError> {
        let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        let rows = sqlx::query(
            "SELECT id, currency, balance, reserved FROM payments_accounts \
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter().map(account_row).collect()
    }

    async fn finish_payout(&self, id: &str, settle: bool) -> Result<Payout, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let status = if settle { "succeeded" } else { "failed" };
        // The status guard makes this idempotent: only a pending payout moves money.
        let row = sqlx::query(&format!(
            "UPDATE payments_payouts SET status = $2, updated_at = now() \
             WHERE id = $1 AND status = 'pending' RETURNING {PAYOUT_COLUMNS}"
        ))
        .bind(id)
        .bind(status)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return self
                .payout(id)
                .await?
                .ok_or_else(|| LedgerError::PayoutNotFound(id.to_owned()));
        };
        let payout = payout_row(&row)?;
        let debit = if settle { payout.amount } else { 0 };
        sqlx::query(
            "UPDATE payments_accounts SET reserved = reserved - $2, balance = balance - $3 \
             WHERE id = $1",
        )
        .bind(&payout.account)
        .bind(payout.amount)
        .bind(debit)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(payout)
    }
}

#[async_trait]
impl Ledger for PostgresLedger {
    async fn create_account(&self, id: &str, currency: &Currency) -> Result<Account, LedgerError> {
        let row = sqlx::query(
            "INSERT INTO payments_accounts (id, currency) VALUES ($1, $2) \
             ON CONFLICT (id) DO NOTHING RETURNING id, currency, balance, reserved",
        )
        .bind(id)
        .bind(currency.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => account_row(&row),
            None => Err(LedgerError::AccountExists(id.to_owned())),
        }
    }

    async fn account(&self, id: &str) -> Result<Option<Account>, LedgerError> {
        let row = sqlx::query(
            "SELECT id, currency, balance, reserved FROM payments_accounts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account_row).transpose()
    }

    async fn transfer(&self, t: &NewTransfer) -> Result<Transfer, LedgerError> {
        if t.from == t.to {
            return Err(LedgerError::SameAccount);
        }
        let mut tx = self.pool.begin().await?;
        let accounts = Self::lock_accounts(&mut tx, &[&t.from, &t.to]).await?;
        let find = |id: &str| {
            accounts
                .iter()
                .find(|a| a.id == id)
                .ok_or_else(|| LedgerError::AccountNotFound(id.to_owned()))
        };
        let (from, to) = (find(&t.from)?, find(&t.to)?);
        check_currency(from, &t.currency)?;
        check_currency(to, &t.currency)?;
        // The check is in the statement, not only in the rows read above: the statement is
        // what the database guarantees.
        let debited = sqlx::query(
            "UPDATE payments_accounts SET balance = balance - $2 \
             WHERE id = $1 AND balance - reserved >= $2",
        )
        .bind(&t.from)
        .bind(t.amount)
        .execute(&mut *tx)
        .await?;
        if debited.rows_affected() != 1 {
            return Err(LedgerError::InsufficientFunds(t.from.clone()));
        }
        sqlx::query("UPDATE payments_accounts SET balance = balance + $2 WHERE id = $1")
            .bind(&t.to)
            .bind(t.amount)
            .execute(&mut *tx)
            .await
            .map_err(|e| overflow_or(e, &t.to))?;
        let id = Uuid::now_v7();
        let created_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO payments_transfers (id, from_account, to_account, amount, currency, created_at) \
             VALUES ($1, $2, $3, $4, $5, now()) RETURNING created_at",
        )
        .bind(id)
        .bind(&t.from)
        .bind(&t.to)
        .bind(t.amount)
        .bind(t.currency.as_str())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Transfer {
            id,
            from: t.from.clone(),
            to: t.to.clone(),
            amount: t.amount,
            currency: t.currency.clone(),
            created_at,
        })
    }

    async fn deposit(&self, d: &NewDeposit) -> Result<bool, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let accounts = Self::lock_accounts(&mut tx, &[&d.account]).await?;
        let account = accounts
            .first()
            .ok_or_else(|| LedgerError::AccountNotFound(d.account.clone()))?;
        check_currency(account, &d.currency)?;
        let inserted = sqlx::query(
            "INSERT INTO payments_deposits (transaction_id, account, amount, currency) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (transaction_id) DO NOTHING",
        )
        .bind(&d.transaction_id)
        .bind(&d.account)
        .bind(d.amount)
        .bind(d.currency.as_str())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("UPDATE payments_accounts SET balance = balance + $2 WHERE id = $1")
            .bind(&d.account)
            .bind(d.amount)
            .execute(&mut *tx)
            .await
            .map_err(|e| overflow_or(e, &d.account))?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_payout(&self, p: &NewPayout) -> Result<Payout, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let accounts = Self::lock_accounts(&mut tx, &[&p.account]).await?;
        let account = accounts
            .first()
            .ok_or_else(|| LedgerError::AccountNotFound(p.account.clone()))?;
        check_currency(account, &p.currency)?;
        let reserved = sqlx::query(
            "UPDATE payments_accounts SET reserved = reserved + $2 \
             WHERE id = $1 AND balance - reserved >= $2",
        )
        .bind(&p.account)
        .bind(p.amount)
        .execute(&mut *tx)
        .await?;
        if reserved.rows_affected() != 1 {
            return Err(LedgerError::InsufficientFunds(p.account.clone()));
        }
        let row = sqlx::query(&format!(
            "INSERT INTO payments_payouts (id, account, msisdn, amount, currency, status) \
             VALUES ($1, $2, $3, $4, $5, 'pending') ON CONFLICT (id) DO NOTHING \
             RETURNING {PAYOUT_COLUMNS}"
        ))
        .bind(&p.id)
        .bind(&p.account)
        .bind(&p.msisdn)
        .bind(p.amount)
        .bind(p.currency.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(LedgerError::PayoutExists(p.id.clone()));
        };
        let payout = payout_row(&row)?;
        tx.commit().await?;
        Ok(payout)
    }

    async fn payout(&self, id: &str) -> Result<Option<Payout>, LedgerError> {
        let row = sqlx::query(&format!(
            "SELECT {PAYOUT_COLUMNS} FROM payments_payouts WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(payout_row).transpose()
    }

    async fn pending_payouts(&self, limit: i64) -> Result<Vec<String>, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM payments_payouts WHERE status = 'pending' ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn record_provider_result(
        &self,
        id: &str,
        result: ProviderResult,
    ) -> Result<Payout, LedgerError> {
        let row = sqlx::query(&format!(
            "UPDATE payments_payouts SET provider_result = COALESCE(provider_result, $2), \
             updated_at = now() WHERE id = $1 RETURNING {PAYOUT_COLUMNS}"
        ))
        .bind(id)
        .bind(result.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => payout_row(&row),
            None => Err(LedgerError::PayoutNotFound(id.to_owned())),
        }
    }

    async fn settle_payout(&self, id: &str) -> Result<Payout, LedgerError> {
        self.finish_payout(id, true).await
    }

    async fn release_payout(&self, id: &str) -> Result<Payout, LedgerError> {
        self.finish_payout(id, false).await
    }

    async fn totals(&self) -> Result<Totals, LedgerError> {
        // Sums as text: a sum of bigints is a numeric, which may not fit an i64.
        let row = sqlx::query(
            "SELECT \
               (SELECT COALESCE(SUM(balance), 0)::TEXT FROM payments_accounts) AS balances, \
               (SELECT COALESCE(SUM(reserved), 0)::TEXT FROM payments_accounts) AS reserved, \
               (SELECT COUNT(*) FROM payments_accounts \
                  WHERE balance < 0 OR reserved < 0 OR reserved > balance) AS broken, \
               (SELECT COALESCE(SUM(amount), 0)::TEXT FROM payments_deposits) AS deposits, \
               (SELECT COALESCE(SUM(amount), 0)::TEXT FROM payments_payouts \
                  WHERE status = 'succeeded') AS settled, \
               (SELECT COALESCE(SUM(amount), 0)::TEXT FROM payments_payouts \
                  WHERE status = 'pending') AS pending, \
               (SELECT COUNT(*) FROM payments_payouts WHERE status = 'pending') AS pending_count",
        )
        .fetch_one(&self.pool)
        .await?;
        let num = |col: &str| -> Result<i128, LedgerError> {
            let text: String = row.try_get(col)?;
            text.parse()
                .map_err(|_| LedgerError::Store(format!("sum {col} is not a whole number")))
        };
        Ok(Totals {
            balances: num("balances")?,
            reserved: num("reserved")?,
            deposits: num("deposits")?,
            settled_payouts: num("settled")?,
            pending_payouts: num("pending")?,
            pending_count: row.try_get("pending_count")?,
            broken_accounts: row.try_get("broken")?,
        })
    }
}
