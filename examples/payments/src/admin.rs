//! `/admin` (admin token): accounts, the ledger's sums, sagas and parked callbacks.
//!
//! | route | does |
//! |---|---|
//! | `POST /admin/accounts` `{"id","currency"}` | create an account (201; 409 if it exists) |
//! | `GET /admin/ledger` | ledger sums and whether the invariant holds |
//! | `GET /admin/sagas?state=failed&limit=100` | payout sagas, newest first, by state |
//! | `GET /admin/sagas/{id}` | one saga: summary, steps with attempts and errors |
//! | `POST /admin/sagas/{id}/retry` | send a parked saga back to work (fresh budgets) |
//! | `GET /admin/callbacks?state=dead&limit=100` | callbacks in a state (default: parked) |
//! | `POST /admin/callbacks/{id}/replay` | replay one parked callback |

use std::str::FromStr;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use steadfast_dlq::{Filter, MessageId, Page};
use steadfast_saga::{ListFilter, SagaId};

use crate::app::AppState;
use crate::callback::CALLBACK_QUEUE;
use crate::http::v1::{AccountView, body};
use crate::money::{self, Currency};
use crate::problem::{self, bad_request, problem};

/// The admin routes (the caller adds the token check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/accounts", post(create_account))
        .route("/ledger", get(ledger))
        .route("/sagas", get(sagas))
        .route("/sagas/{id}", get(saga))
        .route("/sagas/{id}/retry", post(retry_saga))
        .route("/callbacks", get(callbacks))
        .route("/callbacks/{id}/replay", post(replay_callback))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    id: String,
    currency: String,
}

async fn create_account(State(state): State<AppState>, raw: Bytes) -> Response {
    let req: NewAccount = match body(&raw) {
        Ok(r) => r,
        Err(res) => return *res,
    };
    let (id, currency) = match (
        money::account_id("id", &req.id),
        Currency::parse(&req.currency),
    ) {
        (Ok(id), Ok(c)) => (id, c),
        (Err(e), _) | (_, Err(e)) => return bad_request(e.to_string()),
    };
    match state.ledger.create_account(&id, &currency).await {
        Ok(a) => (StatusCode::CREATED, Json(AccountView::from(a))).into_response(),
        Err(e) => problem::ledger(&e),
    }
}

async fn ledger(State(state): State<AppState>) -> Response {
    match state.ledger.totals().await {
        Ok(t) => Json(json!({"totals": t, "invariant_holds": t.holds()})).into_response(),
        Err(e) => problem::ledger(&e),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<usize>,
}

fn saga_error(e: &steadfast_saga::Error) -> Response {
    match e {
        steadfast_saga::Error::NotFound(_) => {
            problem(StatusCode::NOT_FOUND, "not-found", e.to_string())
        }
        e if e.is_transient() => {
            tracing::error!(error = %e, "saga store unavailable");
            problem::unavailable()
        }
        e => problem(StatusCode::CONFLICT, "saga-conflict", e.to_string()),
    }
}

async fn sagas(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let mut filter = ListFilter::default().name(crate::payout::SAGA_NAME);
    if let Some(s) = q.state.as_deref() {
        match steadfast_saga::State::from_str(s) {
            Ok(s) => filter.state = Some(s),
            Err(_) => return bad_request(format!("unknown saga state {s:?}")),
        }
    }
    if let Some(limit) = q.limit {
        filter = filter.limit(limit);
    }
    match state.sagas.list(&filter).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => saga_error(&e),
    }
}

async fn saga(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = SagaId::new(id) else {
        return bad_request("not a saga id");
    };
    match state.sagas.inspect(&id).await {
        Ok(log) => Json(json!({
            "summary": log.summary,
            "input": log.input,
            "steps": log.steps(),
        }))
        .into_response(),
        Err(e) => saga_error(&e),
    }
}

async fn retry_saga(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = SagaId::new(id) else {
        return bad_request("not a saga id");
    };
    match state.sagas.retry(&id).await {
        Ok(new_state) => {
            // The operator cleared the lease; this process's recovery loop (or another's)
            // claims it on its next poll.
            Json(json!({"id": id, "state": new_state})).into_response()
        }
        Err(e) => saga_error(&e),
    }
}

async fn callbacks(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let mut filter = Filter::dead().queue(CALLBACK_QUEUE);
    if let Some(s) = q.state.as_deref() {
        match steadfast_dlq::State::from_str(s) {
            Ok(s) => filter.state = Some(s),
            Err(_) => return bad_request(format!("unknown message state {s:?}")),
        }
    }
    let page = Page::first(u32::try_from(q.limit.unwrap_or(100)).unwrap_or(u32::MAX));
    match state.queue.list(&filter, page).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "callback queue unavailable");
            problem::unavailable()
        }
    }
}

async fn replay_callback(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = MessageId::from_str(&id) else {
        return bad_request("not a message id");
    };
    match state.queue.replay(id).await {
        Ok(()) => Json(json!({"id": id, "replayed": true})).into_response(),
        Err(steadfast_dlq::Error::NotFound(_)) => {
            problem(StatusCode::NOT_FOUND, "not-found", "no such callback")
        }
        Err(e) if e.is_transient() => problem::unavailable(),
        Err(e) => problem(StatusCode::CONFLICT, "not-replayable", e.to_string()),
    }
}
