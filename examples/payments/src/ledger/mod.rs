//! The ledger: accounts, transfers, deposits and payouts, behind one trait with a memory, a
//! SQLite and a Postgres implementation.
//!
//! Every money movement is one atomic step of the store (one transaction on Postgres, one
//! critical section in memory) with its balance check inside it, so concurrent requests can
//! never take an account below zero: on Postgres the debit is
//! `UPDATE ... SET balance = balance - $amount WHERE balance - reserved >= $amount`, and the
//! table's `CHECK (reserved <= balance)` and `CHECK (reserved >= 0)` hold it even against a
//! bug here.
//!
//! The invariant every test checks ([`Totals::holds`]): the sum of balances equals deposits
//! minus settled payouts (transfers move money, never make it), and the sum reserved equals
//! the pending payouts' amounts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Currency;

pub mod memory;
pub mod postgres;
pub mod sqlite;

pub use memory::MemoryLedger;
pub use postgres::PostgresLedger;
pub use sqlite::SqliteLedger;

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The id.
    pub id: String,
    /// Its one currency.
    pub currency: Currency,
    /// Money held, in minor units.
    pub balance: i64,
    /// Part of the balance held for pending payouts.
    pub reserved: i64,
}

impl Account {
    /// What may be spent now: balance minus reservations.
    pub fn available(&self) -> i64 {
        self.balance - self.reserved
    }
}

/// A transfer to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransfer {
    /// Debited account.
    pub from: String,
    /// Credited account.
    pub to: String,
    /// Positive minor units.
    pub amount: i64,
    /// Must be both accounts' currency.
    pub currency: Currency,
}

/// A completed transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The id.
    pub id: Uuid,
    /// Debited account.
    pub from: String,
    /// Credited account.
    pub to: String,
    /// Minor units.
    pub amount: i64,
    /// Currency.
    pub currency: Currency,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// A payout's state as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayoutStatus {
    /// Reserved, not yet settled or released.
    Pending,
    /// The provider paid; the balance dropped.
    Succeeded,
    /// Refused or failed; the reservation was released.
    Failed,
}

impl PayoutStatus {
    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Pending => "pending",
            PayoutStatus::Succeeded => "succeeded",
            PayoutStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(PayoutStatus::Pending),
            "succeeded" => Some(PayoutStatus::Succeeded),
            "failed" => Some(PayoutStatus::Failed),
            _ => None,
        }
    }
}

/// What the provider's disbursement callback said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProviderResult {
    /// Paid.
    Successful,
    /// Not paid.
    Failed,
}

impl ProviderResult {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderResult::Successful => "SUCCESSFUL",
            ProviderResult::Failed => "FAILED",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "SUCCESSFUL" => Some(ProviderResult::Successful),
            "FAILED" => Some(ProviderResult::Failed),
            _ => None,
        }
    }
}

/// A payout to create (and reserve for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayout {
    /// The id (also the saga id and the provider's `X-Reference-Id`).
    pub id: String,
    /// The debited account.
    pub account: String,
    /// Where the money goes.
    pub msisdn: String,
    /// Positive minor units.
    pub amount: i64,
    /// The account's currency.
    pub currency: Currency,
}

/// A payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// The id.
    pub id: String,
    /// The debited account.
    pub account: String,
    /// Where the money goes.
    pub msisdn: String,
    /// Minor units.
    pub amount: i64,
    /// Currency.
    pub currency: Currency,
    /// Pending, succeeded or failed.
    pub status: PayoutStatus,
    /// The provider's callback, once it came.
    pub provider_result: Option<ProviderResult>,
}

/// A deposit credited from a `collection` callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeposit {
    /// The provider's transaction id: a deposit is credited once per id.
    pub transaction_id: String,
    /// The credited account.
    pub account: String,
    /// Positive minor units.
    pub amount: i64,
    /// Must be the account's currency.
    pub currency: Currency,
}

/// Whole-ledger sums, for the invariant and the operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Sum of balances (`i128`: sums of `i64` balances may not fit an `i64`).
    pub balances: i128,
    /// Sum of reservations.
    pub reserved: i128,
    /// Sum of credited deposits.
    pub deposits: i128,
    /// Sum of settled (succeeded) payouts.
    pub settled_payouts: i128,
    /// Sum of pending payouts.
    pub pending_payouts: i128,
    /// Pending payouts.
    pub pending_count: i64,
    /// Accounts whose balance or reservation is negative, or whose reservation exceeds the
    /// balance (always 0).
    pub broken_accounts: i64,
}

impl Totals {
    /// The ledger invariant: balances = deposits − settled payouts, reserved = pending
    /// payouts, and no account broken.
    pub fn holds(&self) -> bool {
        self.broken_accounts == 0
            && self.balances == self.deposits - self.settled_payouts
            && self.reserved == self.pending_payouts
    }
}

/// Why the ledger refused, or could not do, an operation.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// No such account: the caller named the wrong one (404).
    #[error("account {0:?} does not exist")]
    AccountNotFound(String),
    /// An account with this id exists (409).
    #[error("account {0:?} already exists")]
    AccountExists(String),
    /// The request's currency is not the account's (400).
    #[error("account {account:?} holds {expected}, not {got}")]
    CurrencyMismatch {
        /// The account.
        account: String,
        /// Its currency.
        expected: Currency,
        /// The request's.
        got: Currency,
    },
    /// Not enough available money (402): top the account up or wait for pending payouts.
    #[error("insufficient available funds in account {0:?}")]
    InsufficientFunds(String),
    /// A transfer from an account to itself (400).
    #[error("from and to are the same account")]
    SameAccount,
    /// The credit would overflow the account's balance (400).
    #[error("the amount would overflow the balance of account {0:?}")]
    Overflow(String),
    /// No such payout (404; a callback for it is parked).
    #[error("payout {0:?} does not exist")]
    PayoutNotFound(String),
    /// A payout with this id exists.
    #[error("payout {0:?} already exists")]
    PayoutExists(String),
    /// The store failed; the operation did nothing (503, retry).
    #[error("ledger store unavailable: {0}")]
    Store(String),
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        LedgerError::Store(e.to_string())
    }
}

/// The ledger. Every method is atomic; every money movement checks balances in the same
/// atomic step; the idempotent ones say so.
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Creates an empty account.
    async fn create_account(&self, id: &str, currency: &Currency) -> Result<Account, LedgerError>;
    /// An account, if it exists.
    async fn account(&self, id: &str) -> Result<Option<Account>, LedgerError>;
    /// Moves money between two accounts of the same currency.
    async fn transfer(&self, transfer: &NewTransfer) -> Result<Transfer, LedgerError>;
    /// Credits a deposit once per transaction id: `Ok(false)` when it was already credited.
    async fn deposit(&self, deposit: &NewDeposit) -> Result<bool, LedgerError>;
    /// Records a pending payout and reserves its amount (available drops, balance does not).
    async fn create_payout(&self, payout: &NewPayout) -> Result<Payout, LedgerError>;
    /// A payout, if it exists.
    async fn payout(&self, id: &str) -> Result<Option<Payout>, LedgerError>;
    /// Ids of pending payouts (at most `limit`), oldest first.
    async fn pending_payouts(&self, limit: i64) -> Result<Vec<String>, LedgerError>;
    /// Records the provider's result on a payout; the first result wins (idempotent).
    async fn record_provider_result(
        &self,
        id: &str,
        result: ProviderResult,
    ) -> Result<Payout, LedgerError>;
    /// Settles a pending payout: balance and reservation drop by its amount, status
    /// `succeeded`. Idempotent: a settled payout is returned as is.
    async fn settle_payout(&self, id: &str) -> Result<Payout, LedgerError>;
    /// Releases a pending payout's reservation, status `failed`. Idempotent.
    async fn release_payout(&self, id: &str) -> Result<Payout, LedgerError>;
    /// Whole-ledger sums.
    async fn totals(&self) -> Result<Totals, LedgerError>;
}
