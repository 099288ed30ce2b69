//! The in-memory ledger (demo mode and tests): one mutex over the whole ledger, so every
//! operation is trivially atomic. Nothing survives a restart.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::Utc;
use parking_lot::Mutex;
use uuid::Uuid;

use super::{
    Account, Ledger, LedgerError, NewDeposit, NewPayout, NewTransfer, Payout, PayoutStatus,
    ProviderResult, Totals, Transfer,
};
use crate::money::Currency;

#[derive(Debug, Default)]
struct Books {
    accounts: HashMap<String, Account>,
    deposits: HashMap<String, i64>,
    payouts: HashMap<String, (u64, Payout)>,
    next_payout: u64,
    transfers: u64,
}

/// The in-memory [`Ledger`].
#[derive(Debug, Default)]
pub struct MemoryLedger {
    books: Mutex<Books>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }
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

impl Books {
    fn account(&self, id: &str) -> Result<&Account, LedgerError> {
        self.accounts
            .get(id)
            .ok_or_else(|| LedgerError::AccountNotFound(id.to_owned()))
    }

    fn account_mut(&mut self, id: &str) -> Result<&mut Account, LedgerError> {
        self.accounts
            .get_mut(id)
            .ok_or_else(|| LedgerError::AccountNotFound(id.to_owned()))
    }

    fn payout_mut(&mut self, id: &str) -> Result<&mut Payout, LedgerError> {
        self.payouts
            .get_mut(id)
            .map(|(_, p)| p)
            .ok_or_else(|| LedgerError::PayoutNotFound(id.to_owned()))
    }

    /// Ends a pending payout: `settle` takes the money, otherwise it is released.
    fn finish_payout(&mut self, id: &str, settle: bool) -> Result<Payout, LedgerError> {
        let payout = self.payout_mut(id)?.clone();
        if payout.status != PayoutStatus::Pending {
            return Ok(payout);
        }
        let account = self.account_mut(&payout.account)?;
        account.reserved -= payout.amount;
        if settle {
            account.balance -= payout.amount;
        }
        let p = self.payout_mut(id)?;
        p.status = if settle {
            PayoutStatus::Succeeded
        } else {
            PayoutStatus::Failed
        };
        Ok(p.clone())
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn create_account(&self, id: &str, currency: &Currency) -> Result<Account, LedgerError> {
        let mut books = self.books.lock();
        if books.accounts.contains_key(id) {
            return Err(LedgerError::AccountExists(id.to_owned()));
        }
        let account = Account {
            id: id.to_owned(),
            currency: currency.clone(),
            balance: 0,
            reserved: 0,
        };
        books.accounts.insert(id.to_owned(), account.clone());
        Ok(account)
    }

    async fn account(&self, id: &str) -> Result<Option<Account>, LedgerError> {
        Ok(self.books.lock().accounts.get(id).cloned())
    }

    async fn transfer(&self, t: &NewTransfer) -> Result<Transfer, LedgerError> {
        if t.from == t.to {
            return Err(LedgerError::SameAccount);
        }
        let mut books = self.books.lock();
        let from = books.account(&t.from)?;
        check_currency(from, &t.currency)?;
        if from.available() < t.amount {
            return Err(LedgerError::InsufficientFunds(t.from.clone()));
        }
        let to = books.account(&t.to)?;
        check_currency(to, &t.currency)?;
        let credited = to
            .balance
            .checked_add(t.amount)
            .ok_or_else(|| LedgerError::Overflow(t.to.clone()))?;
        books.account_mut(&t.to)?.balance = credited;
        books.account_mut(&t.from)?.balance -= t.amount;
        books.transfers += 1;
        Ok(Transfer {
            id: Uuid::now_v7(),
            from: t.from.clone(),
            to: t.to.clone(),
            amount: t.amount,
            currency: t.currency.clone(),
            created_at: Utc::now(),
        })
    }

    async fn deposit(&self, d: &NewDeposit) -> Result<bool, LedgerError> {
        let mut books = self.books.lock();
        if books.deposits.contains_key(&d.transaction_id) {
            return Ok(false);
        }
        let account = books.account(&d.account)?;
        check_currency(account, &d.currency)?;
        let credited = account
            .balance
            .checked_add(d.amount)
            .ok_or_else(|| LedgerError::Overflow(d.account.clone()))?;
        books.account_mut(&d.account)?.balance = credited;
        books.deposits.insert(d.transaction_id.clone(), d.amount);
        Ok(true)
    }

    async fn create_payout(&self, p: &NewPayout) -> Result<Payout, LedgerError> {
        let mut books = self.books.lock();
        if books.payouts.contains_key(&p.id) {
            return Err(LedgerError::PayoutExists(p.id.clone()));
        }
        let account = books.account(&p.account)?;
        check_currency(account, &p.currency)?;
        if account.available() < p.amount {
            return Err(LedgerError::InsufficientFunds(p.account.clone()));
        }
        books.account_mut(&p.account)?.reserved += p.amount;
        let payout = Payout {
            id: p.id.clone(),
            account: p.account.clone(),
            msisdn: p.msisdn.clone(),
            amount: p.amount,
            currency: p.currency.clone(),
            status: PayoutStatus::Pending,
            provider_result: None,
        };
        let seq = books.next_payout;
        books.next_payout += 1;
        books.payouts.insert(p.id.clone(), (seq, payout.clone()));
        Ok(payout)
    }

    async fn payout(&self, id: &str) -> Result<Option<Payout>, LedgerError> {
        Ok(self.books.lock().payouts.get(id).map(|(_, p)| p.clone()))
    }

    async fn pending_payouts(&self, limit: i64) -> Result<Vec<String>, LedgerError> {
        let books = self.books.lock();
        let mut pending: Vec<_> = books
            .payouts
            .values()
            .filter(|(_, p)| p.status == PayoutStatus::Pending)
            .map(|(seq, p)| (*seq, p.id.clone()))
            .collect();
        pending.sort();
        let limit = usize::try_from(limit).unwrap_or(0);
        Ok(pending.into_iter().take(limit).map(|(_, id)| id).collect())
    }

    async fn record_provider_result(
        &self,
        id: &str,
        result: ProviderResult,
    ) -> Result<Payout, LedgerError> {
        let mut books = self.books.lock();
        let p = books.payout_mut(id)?;
        p.provider_result.get_or_insert(result);
        Ok(p.clone())
    }

    async fn settle_payout(&self, id: &str) -> Result<Payout, LedgerError> {
        self.books.lock().finish_payout(id, true)
    }

    async fn release_payout(&self, id: &str) -> Result<Payout, LedgerError> {
        self.books.lock().finish_payout(id, false)
    }

    async fn totals(&self) -> Result<Totals, LedgerError> {
        let books = self.books.lock();
        let mut t = Totals::default();
        for a in books.accounts.values() {
            t.balances += i128::from(a.balance);
            t.reserved += i128::from(a.reserved);
            if a.balance < 0 || a.reserved < 0 || a.reserved > a.balance {
                t.broken_accounts += 1;
            }
        }
        t.deposits = books.deposits.values().map(|d| i128::from(*d)).sum();
        for (_, p) in books.payouts.values() {
            match p.status {
                PayoutStatus::Succeeded => t.settled_payouts += i128::from(p.amount),
                PayoutStatus::Pending => {
                    t.pending_payouts += i128::from(p.amount);
                    t.pending_count += 1;
                }
                PayoutStatus::Failed => {}
            }
        }
        Ok(t)
    }
}
