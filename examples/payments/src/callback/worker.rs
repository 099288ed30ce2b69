//! Applying one queued callback to the ledger.

use steadfast_dlq::{Message, Outcome};

use super::{Callback, Kind, Status};
use crate::ledger::{Ledger, LedgerError, NewDeposit, ProviderResult};
use crate::money::Currency;

/// The queue callbacks wait in.
pub const CALLBACK_QUEUE: &str = "momo-callbacks";

/// Applies the callback in `message` and says what the queue should do with it: `Ack` once
/// the ledger has it (or it needs nothing), `Retry` on a store error, `Dead` when the ledger
/// cannot place it.
pub async fn apply(ledger: &dyn Ledger, message: &Message) -> Outcome {
    let cb: Callback = match serde_json::from_value(message.payload.clone()) {
        Ok(cb) => cb,
        Err(e) => return Outcome::dead("bad_payload", e.to_string()),
    };
    let Ok(currency) = Currency::parse(&cb.currency) else {
        return Outcome::dead("bad_payload", "currency");
    };
    let result = match (cb.kind, cb.status) {
        (_, Status::Pending) | (Kind::Collection, Status::Failed) => {
            tracing::info!(transaction_id = %cb.transaction_id, kind = ?cb.kind, status = ?cb.status, "callback needs no ledger change");
            return Outcome::Ack;
        }
        (Kind::Collection, Status::Successful) => ledger
            .deposit(&NewDeposit {
                transaction_id: cb.transaction_id.clone(),
                account: cb.external_id.clone(),
                amount: cb.amount,
                currency,
            })
            .await
            .map(|credited| {
                metrics::counter!(crate::metrics::DEPOSITS, "result" => if credited { "credited" } else { "duplicate" }).increment(1);
            }),
        (Kind::Disbursement, status) => {
            let result = if status == Status::Successful {
                ProviderResult::Successful
            } else {
                ProviderResult::Failed
            };
            return disbursement(ledger, &cb, &currency, result).await;
        }
    };
    outcome(result)
}

fn outcome(result: Result<(), LedgerError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Ack,
        Err(LedgerError::Store(e)) => Outcome::retry("ledger_unavailable", e),
        Err(e @ LedgerError::AccountNotFound(_)) => Outcome::dead("unknown_account", e.to_string()),
        Err(e @ LedgerError::PayoutNotFound(_)) => Outcome::dead("unknown_payout", e.to_string()),
        Err(e) => Outcome::dead("rejected", e.to_string()),
    }
}

async fn disbursement(
    ledger: &dyn Ledger,
    cb: &Callback,
    currency: &Currency,
    result: ProviderResult,
) -> Outcome {
    let payout = match ledger.payout(&cb.external_id).await {
        Ok(Some(p)) => p,
        Ok(None) => return outcome(Err(LedgerError::PayoutNotFound(cb.external_id.clone()))),
        Err(e) => return outcome(Err(e)),
    };
    // A callback that disagrees with the payout is not applied: someone must look at it.
    if payout.amount != cb.amount || &payout.currency != currency {
        return Outcome::dead(
            "mismatch",
            format!(
                "payout {} is {} {}, the callback says {} {}",
                payout.id, payout.amount, payout.currency, cb.amount, currency
            ),
        );
    }
    outcome(
        ledger
            .record_provider_result(&payout.id, result)
            .await
            .map(|_| ()),
    )
}
