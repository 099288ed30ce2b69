//! The SQLite ledger: the single-instance durable default. Every money movement is one
//! `BEGIN IMMEDIATE` transaction (the file's write lock taken first, so nothing changes
//! between its balance read and its write), with the balance check in the debit statement too.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use super::{
    Account, Ledger, LedgerError, NewDeposit, NewPayout, NewTransfer, Payout, PayoutStatus,
    ProviderResult, Totals, Transfer,
};
use crate::money::Currency;

/// The SQLite [`Ledger`]. Run [`SqliteLedger::migrate`] once at start-up; one service
/// instance per database file.
///
/// SQLite turns an integer sum that overflows into a float instead of failing, so credits are
/// checked in Rust, on the balance read inside the same write transaction.
#[derive(Debug, Clone)]
pub struct SqliteLedger {
    pool: SqlitePool,
    /// Writers take turns here before asking SQLite for the write lock: its busy handler
    /// sleeps in growing steps while it waits, which costs far more than queueing in-process.
    gate: Arc<tokio::sync::Mutex<()>>,
}

const PAYOUT_COLUMNS: &str = "id, account, msisdn, amount, currency, status, provider_result";

fn account_row(row: &SqliteRow) -> Result<Account, LedgerError> {
    let currency: String = row.try_get("currency")?;
    Ok(Account {
        id: row.try_get("id")?,
        currency: Currency::parse(&currency)
            .map_err(|e| LedgerError::Store(format!("stored currency: {e}")))?,
        balance: row.try_get("balance")?,
        reserved: row.try_get("reserved")?,
    })
}

fn payout_row(row: &SqliteRow) -> Result<Payout, LedgerError> {
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

fn credited(account: &Account, amount: i64) -> Result<i64, LedgerError> {
    account
        .balance
        .checked_add(amount)
        .ok_or_else(|| LedgerError::Overflow(account.id.clone()))
}

impl SqliteLedger {
    /// A ledger on `pool` (open it with WAL and a busy timeout, e.g.
    /// `steadfast_dlq::SqliteQueue::connect_options`).
    pub fn new(pool: SqlitePool) -> Self {
        SqliteLedger {
            pool,
            gate: Arc::default(),
        }
    }

    /// Applies the ledger's SQLite migrations (`examples/payments/migrations_sqlite`, versions
    /// `2026112718xxxx`); other crates' migrations in the same table are left alone.
    pub async fn migrate(pool: &SqlitePool) -> Result<(), LedgerError> {
        let mut migrator = sqlx::migrate!("./migrations_sqlite");
        migrator.set_ignore_missing(true);
        migrator
            .run(pool)
            .await
            .map_err(|e| LedgerError::Store(e.to_string()))
    }

    /// The pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction: this process's writers take turns on the gate, then
    /// `BEGIN IMMEDIATE` takes the file's write lock before anything is read. Dropped
    /// uncommitted (every error path), it rolls back.
    async fn begin(
        &self,
    ) -> Result<
        (
            tokio::sync::MutexGuard<'_, ()>,
            Transaction<'static, Sqlite>,
        ),
        LedgerError,
    > {
        let turn = self.gate.lock().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok((turn, tx))
    }

    async fn read_account(conn: &mut SqliteConnection, id: &str) -> Result<Account, LedgerError> {
        let row = sqlx::query(
            "SELECT id, currency, balance, reserved FROM payments_accounts WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(conn)
        .await?;
        match row {
            Some(row) => account_row(&row),
            None => Err(LedgerError::AccountNotFound(id.to_owned())),
        }
    }

    async fn finish_payout(&self, id: &str, settle: bool) -> Result<Payout, LedgerError> {
        let status = if settle { "succeeded" } else { "failed" };
        let (turn, mut tx) = self.begin().await?;
        // The status guard makes this idempotent: only a pending payout moves money.
        let row = sqlx::query(&format!(
            "UPDATE payments_payouts SET status = ?2, \
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE id = ?1 AND status = 'pending' RETURNING {PAYOUT_COLUMNS}"
        ))
        .bind(id)
        .bind(status)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            drop(turn);
            return self
                .payout(id)
                .await?
                .ok_or_else(|| LedgerError::PayoutNotFound(id.to_owned()));
        };
        let payout = payout_row(&row)?;
        let debit = if settle { payout.amount } else { 0 };
        sqlx::query(
            "UPDATE payments_accounts SET reserved = reserved - ?2, \
             balance = balance - ?3 WHERE id = ?1",
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
impl Ledger for SqliteLedger {
    async fn create_account(&self, id: &str, currency: &Currency) -> Result<Account, LedgerError> {
        let _turn = self.gate.lock().await;
        let row = sqlx::query(
            "INSERT INTO payments_accounts (id, currency) VALUES (?1, ?2) \
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
            "SELECT id, currency, balance, reserved FROM payments_accounts WHERE id = ?1",
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
        let created_at: DateTime<Utc> = Utc::now();
        let id = Uuid::now_v7();
        let (_turn, mut tx) = self.begin().await?;
        let from = Self::read_account(&mut tx, &t.from).await?;
        let to = Self::read_account(&mut tx, &t.to).await?;
        check_currency(&from, &t.currency)?;
        check_currency(&to, &t.currency)?;
        let new_balance = credited(&to, t.amount)?;
        // The check is in the statement, not only in the row read above: the statement is
        // what the database guarantees.
        let debited = sqlx::query(
            "UPDATE payments_accounts SET balance = balance - ?2 \
             WHERE id = ?1 AND balance - reserved >= ?2",
        )
        .bind(&t.from)
        .bind(t.amount)
        .execute(&mut *tx)
        .await?;
        if debited.rows_affected() != 1 {
            return Err(LedgerError::InsufficientFunds(t.from.clone()));
        }
        sqlx::query("UPDATE payments_accounts SET balance = ?2 WHERE id = ?1")
            .bind(&t.to)
            .bind(new_balance)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO payments_transfers \
             (id, from_account, to_account, amount, currency, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(id)
        .bind(&t.from)
        .bind(&t.to)
        .bind(t.amount)
        .bind(t.currency.as_str())
        .bind(created_at)
        .execute(&mut *tx)
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
        let (_turn, mut tx) = self.begin().await?;
        let account = Self::read_account(&mut tx, &d.account).await?;
        check_currency(&account, &d.currency)?;
        let new_balance = credited(&account, d.amount)?;
        let inserted = sqlx::query(
            "INSERT INTO payments_deposits (transaction_id, account, amount, currency) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (transaction_id) DO NOTHING",
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
        sqlx::query("UPDATE payments_accounts SET balance = ?2 WHERE id = ?1")
            .bind(&d.account)
            .bind(new_balance)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_payout(&self, p: &NewPayout) -> Result<Payout, LedgerError> {
        let (_turn, mut tx) = self.begin().await?;
        let account = Self::read_account(&mut tx, &p.account).await?;
        check_currency(&account, &p.currency)?;
        let reserved = sqlx::query(
            "UPDATE payments_accounts SET reserved = reserved + ?2 \
             WHERE id = ?1 AND balance - reserved >= ?2",
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
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending') ON CONFLICT (id) DO NOTHING \
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
            "SELECT {PAYOUT_COLUMNS} FROM payments_payouts WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(payout_row).transpose()
    }

    async fn pending_payouts(&self, limit: i64) -> Result<Vec<String>, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM payments_payouts WHERE status = 'pending' ORDER BY seq LIMIT ?1",
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
        let _turn = self.gate.lock().await;
        let row = sqlx::query(&format!(
            "UPDATE payments_payouts SET provider_result = COALESCE(provider_result, ?2), \
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE id = ?1 RETURNING {PAYOUT_COLUMNS}"
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
        // Summed here as i128: SQLite's SUM fails on an i64 overflow. One read transaction,
        // so the figures are of one moment.
        let mut tx = self.pool.begin().await?;
        let accounts: Vec<(i64, i64)> =
            sqlx::query_as("SELECT balance, reserved FROM payments_accounts")
                .fetch_all(&mut *tx)
                .await?;
        let deposits: Vec<i64> = sqlx::query_scalar("SELECT amount FROM payments_deposits")
            .fetch_all(&mut *tx)
            .await?;
        let payouts: Vec<(i64, String)> = sqlx::query_as(
            "SELECT amount, status FROM payments_payouts WHERE status IN ('succeeded', 'pending')",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let sum = |amounts: &mut dyn Iterator<Item = i64>| amounts.map(i128::from).sum::<i128>();
        let of = |status: &'static str| {
            payouts
                .iter()
                .filter(move |(_, s)| s == status)
                .map(|(a, _)| *a)
        };
        Ok(Totals {
            balances: sum(&mut accounts.iter().map(|a| a.0)),
            reserved: sum(&mut accounts.iter().map(|a| a.1)),
            deposits: sum(&mut deposits.iter().copied()),
            settled_payouts: sum(&mut of("succeeded")),
            pending_payouts: sum(&mut of("pending")),
            pending_count: of("pending").count() as i64,
            broken_accounts: accounts
                .iter()
                .filter(|(b, r)| *b < 0 || *r < 0 || r > b)
                .count() as i64,
        })
    }
}
