//! The admin API, behind `Authorization: Bearer <ADMIN_TOKEN>` (401 without it), or the
//! console's session cookie (see [`crate::console::auth`]; a state-changing request on the
//! cookie must also carry `X-Steadfast-CSRF`, else 403). Disabled (routes absent) when no
//! token is configured.
//!
//! - `GET /admin/stats`: queue depth by state (last reading, one sample a minute over the last
//!   hour), throughput, breakers open; from memory (the background checks), no store query
//! - `GET /admin/dlq?state=dead&error_kind=&since=&until=&limit=&after=`: list (paged by id)
//! - `GET /admin/dlq/{id}`, `DELETE /admin/dlq/{id}`, `POST /admin/dlq/{id}/replay` (dead or
//!   retrying), `POST /admin/dlq/{id}/run-now` (retrying: due now, attempts kept)
//! - `POST /admin/dlq/replay` (bulk, same filters), `POST /admin/dlq/purge` (same filters)
//! - `GET /admin/breakers`, `POST /admin/breakers/{name}/{open|close|reset}`
//! - `GET /admin/registry`, `GET /admin/conversations/{wa_id}`
//! - `GET /admin/sagas?state=failed&limit=`, `GET /admin/sagas/{id}`,
//!   `POST /admin/sagas/{id}/retry`, `POST /admin/sagas/{id}/resolve?note=` (reply-action
//!   sagas; `{id}` is the saga id, `/` as `%2F`, or just the message's `wamid`)

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;
use steadfast_dlq::{Filter, MessageId, Page};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::problem::Problem;

async fn auth(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &app.config.admin_token else {
        return Problem::new(StatusCode::NOT_FOUND).into_response();
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    use crate::console::auth::{self as session, CookieAuth};
    let failure = match presented {
        Some(p) if !bool::from(p.as_bytes().ct_eq(token.expose().as_bytes())) => Some("mismatch"),
        Some(_) => None,
        // No bearer token: the console's session cookie, with its CSRF header for anything
        // that changes state.
        None => match session::from_headers(request.headers(), token.expose(), Utc::now()) {
            CookieAuth::Absent => Some("missing"),
            CookieAuth::Invalid => Some("mismatch"),
            CookieAuth::Valid(s) => {
                if session::is_safe(request.method()) || session::csrf_ok(request.headers(), &s) {
                    None
                } else {
                    session::note_failure("csrf", request.method(), "admin API");
                    return Problem::new(StatusCode::FORBIDDEN)
                        .detail(format!(
                            "a request that changes state on the console's cookie must carry {}",
                            session::CSRF_HEADER
                        ))
                        .into_response();
                }
            }
        },
    };
    if let Some(reason) = failure {
        // Someone without the token is trying the admin API: worth an alert when it repeats.
        // Never log what was presented: a near-miss token, or the real one sent to the wrong
        // place, must not end up in the logs.
        session::note_failure(reason, request.method(), "admin API");
        return Problem::new(StatusCode::UNAUTHORIZED)
            .detail("admin API: send Authorization: Bearer <ADMIN_TOKEN>")
            .header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            .into_response();
    }
    next.run(request).await
}

/// The admin routes, or `None` when no admin token is configured.
pub fn router(state: &AppState) -> Option<Router<AppState>> {
    state.config.admin_token.as_ref()?;
    Some(
        Router::new()
            .route("/stats", get(stats))
            .route("/dlq", get(list))
            .route("/dlq/replay", post(replay_matching))
            .route("/dlq/purge", post(purge))
            .route("/dlq/{id}", get(inspect).delete(delete))
            .route("/dlq/{id}/replay", post(replay))
            .route("/dlq/{id}/run-now", post(run_now))
            .route("/breakers", get(breakers))
            .route("/breakers/{name}/{action}", post(breaker_action))
            .route("/registry", get(registry))
            .route("/conversations/{wa_id}", get(conversation))
            .route("/sagas", get(list_sagas))
            .route("/sagas/{id}", get(inspect_saga))
            .route("/sagas/{id}/retry", post(retry_saga))
            .route("/sagas/{id}/resolve", post(resolve_saga))
            .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth)),
    )
}

/// Filters and paging of the DLQ endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct DlqQuery {
    /// `dead` (default), `pending`, `running`, `retrying`, `done`.
    state: Option<String>,
    /// Only messages whose last error has this kind.
    error_kind: Option<String>,
    /// Changed at or after (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Changed before (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// Page size (default 50, at most the store's maximum).
    limit: Option<u32>,
    /// Continue after this id.
    after: Option<String>,
}

fn bad_request(detail: impl Into<String>) -> Response {
    Problem::new(StatusCode::BAD_REQUEST)
        .detail(detail)
        .into_response()
}

/// 503 for a store error. The driver's text (hosts, users, SQL) goes to the log only.
fn unavailable(store: &'static str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(store, error = %error, "admin: store error");
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .detail(format!("{store} store unavailable; retry later"))
        .into_response()
}

/// An action on one message that the queue refused: 404 no such message, 409 not in a state
/// the action takes, 503 otherwise.
fn message_action_failed(e: &steadfast_dlq::Error) -> Response {
    let status = match e {
        steadfast_dlq::Error::NotFound(_) => StatusCode::NOT_FOUND,
        steadfast_dlq::Error::WrongState { .. } => StatusCode::CONFLICT,
        _ => return store_down(e),
    };
    Problem::new(status).detail(e.to_string()).into_response()
}

fn store_down(e: &steadfast_dlq::Error) -> Response {
    unavailable("queue", e)
}

impl DlqQuery {
    /// The filter, or what is wrong with the query.
    fn filter(&self, app: &AppState) -> Result<Filter, String> {
        let mut f = match &self.state {
            None => Filter::dead(),
            Some(s) => Filter::in_state(s.parse().map_err(|_| {
                format!("unknown state {s:?}: pending, running, retrying, dead or done")
            })?),
        };
        f = f.queue(app.config.storage.queue_name.clone());
        if let Some(k) = &self.error_kind {
            f = f.error_kind(k.clone());
        }
        f.since = self.since;
        f.until = self.until;
        Ok(f)
    }
}

fn parse_id(id: &str) -> Result<MessageId, String> {
    id.parse()
        .map_err(|_| format!("{id:?} is not a message id (a UUID)"))
}

async fn list(State(app): State<AppState>, Query(q): Query<DlqQuery>) -> Response {
    let filter = match q.filter(&app) {
        Ok(f) => f,
        Err(r) => return bad_request(r),
    };
    let mut page = Page::first(q.limit.unwrap_or(50));
    if let Some(after) = &q.after {
        match parse_id(after) {
            Ok(id) => page = page.after(id),
            Err(r) => return bad_request(r),
        }
    }
    match app.ingestor.queue().list(&filter, page).await {
        Ok(messages) => {
            let next = messages.last().map(|m| m.id.to_string());
            Json(json!({"messages": messages, "next_after": next})).into_response()
        }
        Err(e) => store_down(&e),
    }
}

async fn inspect(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return bad_request(r),
    };
    match app.ingestor.queue().get(id).await {
        Ok(Some(m)) => Json(m).into_response(),
        Ok(None) => Problem::new(StatusCode::NOT_FOUND)
            .detail("no such message")
            .into_response(),
        Err(e) => store_down(&e),
    }
}

/// `POST /admin/dlq/{id}/replay`: a dead (or retrying) message back to pending, due now,
/// attempts reset.
async fn replay(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return bad_request(r),
    };
    match app.ingestor.queue().replay(id).await {
        Ok(()) => {
            tracing::info!(message = %id, "admin: message replayed");
            Json(json!({"replayed": 1})).into_response()
        }
        Err(e) => message_action_failed(&e),
    }
}

/// `POST /admin/dlq/{id}/run-now`: a retrying (or snoozed) message due now, its attempts
/// kept: "try it again now" without waiting out its backoff.
async fn run_now(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return bad_request(r),
    };
    match app.ingestor.queue().run_now(id).await {
        Ok(()) => {
            tracing::info!(message = %id, "admin: message due now");
            Json(json!({"due_now": 1})).into_response()
        }
        Err(e) => message_action_failed(&e),
    }
}

async fn replay_matching(State(app): State<AppState>, Query(q): Query<DlqQuery>) -> Response {
    let filter = match q.filter(&app) {
        Ok(f) => f,
        Err(r) => return bad_request(r),
    };
    match app.ingestor.queue().replay_matching(&filter).await {
        Ok(n) => {
            tracing::info!(replayed = n, "admin: bulk replay");
            Json(json!({"replayed": n})).into_response()
        }
        Err(steadfast_dlq::Error::InvalidInput(m)) => bad_request(m),
        Err(e) => store_down(&e),
    }
}

async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return bad_request(r),
    };
    match app.ingestor.queue().delete(id).await {
        Ok(true) => Json(json!({"deleted": 1})).into_response(),
        Ok(false) => Problem::new(StatusCode::NOT_FOUND)
            .detail("no such message")
            .into_response(),
        Err(e) => store_down(&e),
    }
}

async fn purge(State(app): State<AppState>, Query(q): Query<DlqQuery>) -> Response {
    let filter = match q.filter(&app) {
        Ok(f) => f,
        Err(r) => return bad_request(r),
    };
    match app.ingestor.queue().purge(&filter).await {
        Ok(n) => {
            tracing::info!(purged = n, "admin: purge");
            Json(json!({"purged": n})).into_response()
        }
        Err(steadfast_dlq::Error::InvalidInput(m)) => bad_request(m),
        Err(e) => store_down(&e),
    }
}

/// `GET /admin/stats`: the queue's recent statistics and the breakers open, all from memory.
async fn stats(State(app): State<AppState>) -> Response {
    let history = app.checks.history();
    let open: Vec<String> = app
        .services
        .as_ref()
        .map(|s| {
            s.all_breakers()
                .into_iter()
                .filter(|b| {
                    use steadfast_circuit_breaker::State as B;
                    matches!(b.breaker.state(), B::Open | B::HalfOpen | B::ForcedOpen)
                })
                .map(|b| b.name)
                .collect()
        })
        .unwrap_or_default();
    Json(json!({
        "queue": app.config.storage.queue_name,
        "latest": history.latest(),
        "throughput_per_minute": history.throughput_per_minute(),
        "samples": history.samples().collect::<Vec<_>>(),
        "breakers_open": open,
    }))
    .into_response()
}

fn no_worker_side() -> Response {
    Problem::new(StatusCode::NOT_FOUND)
        .detail("this process does not run the worker side")
        .into_response()
}

async fn breakers(State(app): State<AppState>) -> Response {
    let Some(s) = &app.services else {
        return no_worker_side();
    };
    let list: Vec<_> = s
        .all_breakers()
        .into_iter()
        .map(|b| {
            let mut m = serde_json::to_value(b.breaker.metrics()).unwrap_or_default();
            m["name"] = json!(b.name);
            m["service"] = json!(b.service);
            m
        })
        .collect();
    Json(json!({"breakers": list})).into_response()
}

async fn breaker_action(
    State(app): State<AppState>,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    let Some(s) = &app.services else {
        return no_worker_side();
    };
    // A service name addresses every endpoint breaker of that service.
    let targets: Vec<_> = s
        .all_breakers()
        .into_iter()
        .filter(|b| b.name == name || b.service.as_deref() == Some(name.as_str()))
        .collect();
    if targets.is_empty() {
        return Problem::new(StatusCode::NOT_FOUND)
            .detail(format!("no breaker or service named {name:?}"))
            .into_response();
    }
    for b in targets.iter().map(|t| &t.breaker) {
        match action.as_str() {
            "open" => b.force_open(),
            "close" => b.transition_to_closed(),
            "reset" => b.reset(),
            other => {
                return bad_request(format!("unknown action {other:?}: open, close or reset"));
            }
        }
    }
    tracing::warn!(breaker = %name, action = %action, count = targets.len(), "admin: breaker changed by hand");
    s.refresh_gauges();
    let states: Vec<_> = targets
        .iter()
        .map(|b| json!({"name": b.name, "state": b.breaker.state().as_str()}))
        .collect();
    Json(json!({"breakers": states})).into_response()
}

async fn registry(State(app): State<AppState>) -> Response {
    let Some(s) = &app.services else {
        return no_worker_side();
    };
    Json(s.registry.report()).into_response()
}

async fn conversation(State(app): State<AppState>, Path(wa_id): Path<String>) -> Response {
    let Some(s) = &app.services else {
        return no_worker_side();
    };
    match s.conversations.load(&wa_id).await {
        Ok(Some(c)) => Json(json!({
            "wa_id": wa_id,
            "state": crate::worker::conversation::state_name(c.state()),
            "version": c.version(),
            "entered_at": c.entered_at(),
            "context": c.context(),
            "history": c.history(),
        }))
        .into_response(),
        Ok(None) => Problem::new(StatusCode::NOT_FOUND)
            .detail("no conversation for this sender")
            .into_response(),
        Err(e) => unavailable("conversation", &e),
    }
}

/// Filters of `GET /admin/sagas`.
#[derive(Debug, Default, Deserialize)]
pub struct SagaQuery {
    /// `running`, `completed`, `compensating`, `compensated`, `failed` (parked), `resolved`;
    /// all when absent.
    state: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<usize>,
}

/// An action on one saga that the store refused: 404 no such saga, 409 not in a state the
/// action takes, 400 a bad id, 503 otherwise.
fn saga_failed(e: &steadfast_saga::Error) -> Response {
    use steadfast_saga::Error as E;
    let status = match e {
        E::NotFound(_) => StatusCode::NOT_FOUND,
        E::WrongState { .. } => StatusCode::CONFLICT,
        E::InvalidInput(_) => StatusCode::BAD_REQUEST,
        _ => return unavailable("saga", e),
    };
    Problem::new(status).detail(e.to_string()).into_response()
}

/// A saga id from the path: the id itself (`reply-actions/<wamid>`, the `/` sent as `%2F`),
/// or a message's `wamid`, whose reply-actions saga is meant.
fn saga_id(id: &str) -> Result<steadfast_saga::SagaId, steadfast_saga::Error> {
    if id.contains('/') {
        steadfast_saga::SagaId::new(id)
    } else {
        steadfast_saga::SagaId::derive(crate::actions::SAGA_NAME, id)
    }
}

async fn list_sagas(State(app): State<AppState>, Query(q): Query<SagaQuery>) -> Response {
    let Some(s) = &app.services else {
        return no_worker_side();
    };
    let mut filter = steadfast_saga::ListFilter::default();
    if let Some(state) = &q.state {
        match state.parse() {
            Ok(st) => filter.state = Some(st),
            Err(_) => {
                return bad_request(format!(
                    "unknown state {state:?}: running, completed, compensating, compensated, failed or resolved"
                ));
            }
        }
    }
    if let Some(limit) = q.limit {
        filter = filter.limit(limit);
    }
    match s.actions.operator().list(&filter).await {
        Ok(sagas) => Json(json!({ "sagas": sagas })).into_response(),
        Err(e) => saga_failed(&e),
    }
}

async fn inspect_saga(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(s) = &app.services else {
        return no_worker_side();
    };
    let id = match saga_id(&id) {
        Ok(id) => id,
        Err(e) => return saga_failed(&e),
    };
    match s.actions.operator().inspect(&id).await {
        Ok(log) => Json(json!({
            "saga": log.summary,
            "input": log.input,
            "steps": log.steps(),
            "log": log.entries,
        }))
        .into_response(),
        Err(e) => saga_failed(&e),
    }
}

/// `POST /admin/sagas/{id}/retry`: a parked saga back to work with fresh retry budgets; the
/// recovery loop picks it up at its next poll.
async fn retry_saga(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(s) = &app.services else {
        return no_worker_side();
    };
    let id = match saga_id(&id) {
        Ok(id) => id,
        Err(e) => return saga_failed(&e),
    };
    match s.actions.operator().retry(&id).await {
        Ok(state) => {
            tracing::warn!(saga = %id, resumes = %state, "admin: saga retried");
            Json(json!({"saga": id, "resumes": state})).into_response()
        }
        Err(e) => saga_failed(&e),
    }
}

/// Why a saga was resolved by hand.
#[derive(Debug, Default, Deserialize)]
pub struct ResolveQuery {
    /// The operator's note, kept in the saga's log.
    note: Option<String>,
}

/// `POST /admin/sagas/{id}/resolve?note=...`: a parked saga marked as handled by hand.
async fn resolve_saga(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ResolveQuery>,
) -> Response {
    let Some(s) = &app.services else {
        return no_worker_side();
    };
    let id = match saga_id(&id) {
        Ok(id) => id,
        Err(e) => return saga_failed(&e),
    };
    let note = q
        .note
        .unwrap_or_else(|| "resolved through the admin API".to_owned());
    match s.actions.operator().resolve(&id, note).await {
        Ok(()) => {
            tracing::warn!(saga = %id, "admin: saga resolved by hand");
            Json(json!({"saga": id, "state": "resolved"})).into_response()
        }
        Err(e) => saga_failed(&e),
    }
}
