//! `/admin` (admin token, or the console's session cookie): accounts, the ledger's sums, and
//! the kit's shared endpoints ([`steadfast_service_kit::admin`]) over the callback queue, the
//! provider breaker and the payout sagas: the same admin API as the webhook's for the same
//! things, which the console ([`crate::console`]) is a client of.
//!
//! | route | does |
//! |---|---|
//! | `POST /admin/accounts` `{"id","currency"}` | create an account (201; 409 if it exists) |
//! | `GET /admin/ledger` | ledger sums and whether the invariant holds |
//! | `GET /admin/callbacks?state=dead&limit=100` | callbacks in a state (default: parked), a JSON array |
//! | `POST /admin/callbacks/{id}/replay` | replay one parked callback |
//! | `GET /admin/stats` | the callback queue's depth by state over the last hour, throughput, breakers open |
//! | `GET /admin/dlq?...`, `GET`/`DELETE /admin/dlq/{id}`, `POST /admin/dlq/{id}/replay`, `/run-now`, `POST /admin/dlq/replay`, `/purge` | the callback queue's messages (filtered, paged), one, replay, bulk replay and purge |
//! | `GET /admin/breakers`, `POST /admin/breakers/momo-provider/{open,close,reset}` | the provider breaker |
//! | `GET /admin/sagas?state=failed&limit=100` | payout sagas, newest first, by state: `{"sagas": [...]}` |
//! | `GET /admin/sagas/{id}` | one saga: `{"saga", "input", "steps", "log"}` |
//! | `POST /admin/sagas/{id}/retry` | send a parked saga back to work (fresh budgets) |
//! | `POST /admin/sagas/{id}/resolve?note=` | mark a parked saga handled by hand |

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use steadfast_dlq::{Filter, MessageId, Page};
use steadfast_service_kit::admin::{AdminApi, DeadLetters, NamedBreaker, Sagas, guard};

use crate::app::AppState;
use crate::callback::CALLBACK_QUEUE;
use crate::http::v1::{AccountView, body};
use crate::money::{self, Currency};
use crate::problem::{self, bad_request, problem};

/// The admin routes, behind the admin token (bearer, or the console's cookie and CSRF
/// header).
pub fn router(state: &AppState) -> Router<AppState> {
    let checks = state.checks.clone();
    let api = AdminApi::new(state.config.admin_token.clone())
        .dead_letters(DeadLetters::new(state.queue.clone(), CALLBACK_QUEUE))
        .queue_history(Arc::new(move || checks.history()))
        .breakers(Arc::new(vec![NamedBreaker {
            name: state.provider_breaker.name().to_owned(),
            service: None,
            breaker: state.provider_breaker.clone(),
        }]))
        .sagas(Sagas::new(state.sagas.clone()).named(crate::payout::SAGA_NAME));
    api.routes()
        .route("/accounts", post(create_account))
        .route("/ledger", get(ledger))
        .route("/callbacks", get(callbacks))
        .route("/callbacks/{id}/replay", post(replay_callback))
        .route_layer(axum::middleware::from_fn_with_state(
            api.guard(),
            guard::require,
        ))
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
