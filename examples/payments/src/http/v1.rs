//! `/v1`: accounts, transfers and payouts (behind the API token; POSTs behind the
//! idempotency layer).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::AppState;
use crate::ledger::{Account, NewPayout, NewTransfer, Payout};
use crate::money::{self, Currency};
use crate::problem::{self, bad_request};

/// `GET /v1/accounts/{id}` and `POST /admin/accounts` answer this.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountView {
    /// The id.
    pub id: String,
    /// The currency.
    pub currency: String,
    /// Money held.
    pub balance: i64,
    /// Balance minus reserved payouts.
    pub available: i64,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        AccountView {
            available: a.available(),
            id: a.id,
            currency: a.currency.to_string(),
            balance: a.balance,
        }
    }
}

/// `GET /v1/accounts/{id}`.
pub async fn account(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.ledger.account(&id).await {
        Ok(Some(a)) => Json(AccountView::from(a)).into_response(),
        Ok(None) => problem::problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("account {id:?} does not exist"),
        ),
        Err(e) => problem::ledger(&e),
    }
}

/// A JSON body, or a 400 problem saying what is wrong with it. (axum's `Json` extractor
/// answers its own plain-text errors; the contract wants problem+json.)
pub(crate) fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(bytes)
        .map_err(|e| Box::new(bad_request(format!("invalid JSON body: {e}"))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferRequest {
    from: String,
    to: String,
    amount: i64,
    currency: String,
}

/// `POST /v1/transfers`.
pub async fn transfer(State(state): State<AppState>, raw: Bytes) -> Response {
    let req: TransferRequest = match body(&raw) {
        Ok(r) => r,
        Err(res) => return *res,
    };
    let checked = (|| {
        Ok::<_, money::Invalid>(NewTransfer {
            from: money::account_id("from", &req.from)?,
            to: money::account_id("to", &req.to)?,
            amount: money::amount(req.amount)?,
            currency: Currency::parse(&req.currency)?,
        })
    })();
    let t = match checked {
        Ok(t) => t,
        Err(e) => return bad_request(e.to_string()),
    };
    match state.ledger.transfer(&t).await {
        Ok(done) => {
            metrics::counter!(crate::metrics::TRANSFERS).increment(1);
            (
                StatusCode::CREATED,
                Json(json!({
                    "id": done.id,
                    "from": done.from,
                    "to": done.to,
                    "amount": done.amount,
                    "currency": done.currency,
                    "status": "completed",
                    "created_at": done.created_at,
                })),
            )
                .into_response()
        }
        Err(e) => problem::ledger(&e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayoutRequest {
    account: String,
    msisdn: String,
    amount: i64,
    currency: String,
}

/// `POST /v1/payouts`: records the payout with its reservation, creates its saga, 202.
pub async fn create_payout(State(state): State<AppState>, raw: Bytes) -> Response {
    let req: PayoutRequest = match body(&raw) {
        Ok(r) => r,
        Err(res) => return *res,
    };
    let checked = (|| {
        Ok::<_, money::Invalid>(NewPayout {
            id: format!("po_{}", uuid::Uuid::now_v7().simple()),
            account: money::account_id("account", &req.account)?,
            msisdn: money::msisdn(&req.msisdn)?,
            amount: money::amount(req.amount)?,
            currency: Currency::parse(&req.currency)?,
        })
    })();
    let new = match checked {
        Ok(p) => p,
        Err(e) => return bad_request(e.to_string()),
    };
    let payout = match state.ledger.create_payout(&new).await {
        Ok(p) => p,
        Err(e) => return problem::ledger(&e),
    };
    if let Err(e) = state.payouts.start(&payout.id).await {
        // The reservation is recorded; without a saga nothing would ever finish it. Give
        // the money back and let the client retry (the 5xx releases the idempotency key).
        tracing::error!(payout = %payout.id, error = %e, "payout saga could not be created");
        if let Err(e) = state.ledger.release_payout(&payout.id).await {
            // Start-up adoption (`adopt_pending`) will pick it up.
            tracing::error!(payout = %payout.id, error = %e, "release failed too");
        }
        return problem::unavailable();
    }
    tracing::info!(payout = %payout.id, msisdn = %steadfast_service_kit::mask::mask_phone(&payout.msisdn), amount = payout.amount, "payout accepted");
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": payout.id, "status": "pending"})),
    )
        .into_response()
}

/// `GET /v1/payouts/{id}`.
pub async fn payout(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.ledger.payout(&id).await {
        Ok(Some(p)) => Json(payout_view(&p)).into_response(),
        Ok(None) => problem::problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("payout {id:?} does not exist"),
        ),
        Err(e) => problem::ledger(&e),
    }
}

fn payout_view(p: &Payout) -> serde_json::Value {
    json!({
        "id": p.id,
        "account": p.account,
        "amount": p.amount,
        "currency": p.currency,
        "status": p.status,
    })
}
