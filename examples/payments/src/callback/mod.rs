//! MoMo callbacks: the payload, and the worker that applies them from the durable queue.
//!
//! `/momo/callback` only checks and enqueues (dedup key = `transactionId`); the worker
//! applies: a SUCCESSFUL `collection` credits the account `externalId` (once per
//! `transactionId`, also guarded by the ledger's deposits table), a SUCCESSFUL or FAILED
//! `disbursement` is recorded on the payout `externalId` for its saga to settle or release.
//! A callback the ledger cannot place (unknown account or payout, currency or amount that does
//! not match) is dead-lettered with its reason, never dropped: an operator looks at it and
//! replays it once the cause is fixed.

use serde::{Deserialize, Serialize};

pub mod worker;

pub use worker::{CALLBACK_QUEUE, apply};

/// What the callback is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Money came in: credit the account `externalId`.
    Collection,
    /// A payout's result: settle or release the payout `externalId`.
    Disbursement,
}

/// The provider's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Done.
    Successful,
    /// Failed for good.
    Failed,
    /// Still in progress; a final callback follows.
    Pending,
}

/// The callback body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Callback {
    /// The provider's id of this transaction: the de-duplication key.
    pub transaction_id: String,
    /// Our id: an account (collection) or a payout (disbursement).
    pub external_id: String,
    /// Collection or disbursement.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Minor units.
    pub amount: i64,
    /// Currency.
    pub currency: String,
    /// SUCCESSFUL, FAILED or PENDING.
    pub status: Status,
}

/// The longest `transactionId` / `externalId` accepted.
pub const MAX_ID_LEN: usize = 128;

impl Callback {
    /// Parses and checks a body: ids non-empty and printable, amount positive, currency
    /// well-formed. Anything else is `invalid_payload`.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let cb: Callback = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let id_ok = |s: &str| {
            !s.is_empty() && s.len() <= MAX_ID_LEN && s.bytes().all(|b| b.is_ascii_graphic())
        };
        if !id_ok(&cb.transaction_id) || !id_ok(&cb.external_id) {
            return Err("transactionId and externalId must be 1-128 visible ASCII".into());
        }
        crate::money::amount(cb.amount).map_err(|e| e.to_string())?;
        crate::money::Currency::parse(&cb.currency).map_err(|e| e.to_string())?;
        Ok(cb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_shape_and_refuses_the_rest() {
        let ok = br#"{"transactionId":"t1","externalId":"acc_a","type":"collection","amount":500,"currency":"RWF","status":"SUCCESSFUL"}"#;
        let cb = Callback::parse(ok).unwrap();
        assert_eq!(cb.kind, Kind::Collection);
        assert_eq!(cb.status, Status::Successful);
        for bad in [
            &br#"{"transactionId":"t1"}"#[..],
            br#"not json"#,
            br#"{"transactionId":"","externalId":"a","type":"collection","amount":5,"currency":"RWF","status":"SUCCESSFUL"}"#,
            br#"{"transactionId":"t","externalId":"a","type":"refund","amount":5,"currency":"RWF","status":"SUCCESSFUL"}"#,
            br#"{"transactionId":"t","externalId":"a","type":"collection","amount":0,"currency":"RWF","status":"SUCCESSFUL"}"#,
            br#"{"transactionId":"t","externalId":"a","type":"collection","amount":5,"currency":"rwf","status":"SUCCESSFUL"}"#,
            br#"{"transactionId":"t","externalId":"a","type":"collection","amount":5,"currency":"RWF","status":"DONE"}"#,
        ] {
            assert!(Callback::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
