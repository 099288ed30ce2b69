//! The `/dlq` endpoints over one queue: list (filtered, paged by id), one message, replay,
//! run now, delete, bulk replay and purge by filter.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use steadfast_dlq::{Filter, MessageId, Page, Queue};

use super::{bad_request, not_found, unavailable};
use crate::problem::Problem;

/// A queue's dead letters (and its other states), for [`super::AdminApi::dead_letters`].
#[derive(Clone)]
pub struct DeadLetters {
    queue: Arc<dyn Queue>,
    queue_name: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("queue_name", &self.queue_name)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// The messages of `queue_name` in `queue` (every filter is scoped to it).
    pub fn new(queue: Arc<dyn Queue>, queue_name: impl Into<String>) -> Self {
        Self {
            queue,
            queue_name: queue_name.into(),
        }
    }

    /// The queue's name.
    pub fn queue_name(&self) -> &str {
        &self.queue_name
    }

    pub(super) fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/dlq", get(list))
            .route("/dlq/replay", post(replay_matching))
            .route("/dlq/purge", post(purge))
            .route("/dlq/{id}", get(inspect).delete(delete))
            .route("/dlq/{id}/replay", post(replay))
            .route("/dlq/{id}/run-now", post(run_now))
            .with_state(self.clone())
    }
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

impl DlqQuery {
    /// The filter, or what is wrong with the query.
    fn filter(&self, queue_name: &str) -> Result<Filter, String> {
        let mut f = match &self.state {
            None => Filter::dead(),
            Some(s) => Filter::in_state(s.parse().map_err(|_| {
                format!("unknown state {s:?}: pending, running, retrying, dead or done")
            })?),
        };
        f = f.queue(queue_name.to_owned());
        if let Some(k) = &self.error_kind {
            f = f.error_kind(k.clone());
        }
        f.since = self.since;
        f.until = self.until;
        Ok(f)
    }
}

/// An action on one message that the queue refused: 404 no such message, 409 not in a state
/// the action takes, 503 otherwise.
fn message_action_failed(e: &steadfast_dlq::Error) -> Response {
    let status = match e {
        steadfast_dlq::Error::NotFound(_) => StatusCode::NOT_FOUND,
        steadfast_dlq::Error::WrongState { .. } => StatusCode::CONFLICT,
        _ => return unavailable("queue", e),
    };
    Problem::new(status).detail(e.to_string()).into_response()
}

fn parse_id(id: &str) -> Result<MessageId, String> {
    id.parse()
        .map_err(|_| format!("{id:?} is not a message id (a UUID)"))
}

async fn list(State(d): State<DeadLetters>, Query(q): Query<DlqQuery>) -> Response {
    let filter = match q.filter(&d.queue_name) {
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
    match d.queue.list(&filter, page).await {
        Ok(messages) => {
            let next = messages.last().map(|m| m.id.to_string());
            Json(json!({"messages": messages, "next_after": next})).into_response()
        }
        Err(e) => unavailable("queue", &e),
    }
}

async fn inspect(State(d): State<DeadLetters>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return bad_request(r),
    };
    match d.queue.get(id).await {
        Ok(Some(m)) => Json(m).into_response(),
        Ok(None) => not_found("no such message"),
        Err(e) => unavailable("queue", &e),
    }
}

/// `POST /dlq/{id}/replay`: a dead (or retrying) message back to pending, due now, attempts
/// reset.
async fn replay(State(d): State<DeadLetters>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return bad_request(r),
    };
    match d.queue.replay(id).await {
        Ok(()) => {
            tracing::info!(message = %id, "admin: message replayed");
            Json(json!({"replayed": 1})).into_response()
        }
        Err(e) => message_action_failed(&e),
    }
}

/// `POST /dlq/{id}/run-now`: a retrying (or snoozed) message due now, its attempts kept.
async fn run_now(State(d): State<DeadLetters>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return bad_request(r),
    };
    match d.queue.run_now(id).await {
        Ok(()) => {
            tracing::info!(message = %id, "admin: message due now");
            Json(json!({"due_now": 1})).into_response()
        }
        Err(e) => message_action_failed(&e),
    }
}

async fn replay_matching(State(d): State<DeadLetters>, Query(q): Query<DlqQuery>) -> Response {
    let filter = match q.filter(&d.queue_name) {
        Ok(f) => f,
        Err(r) => return bad_request(r),
    };
    match d.queue.replay_matching(&filter).await {
        Ok(n) => {
            tracing::info!(replayed = n, "admin: bulk replay");
            Json(json!({"replayed": n})).into_response()
        }
        Err(steadfast_dlq::Error::InvalidInput(m)) => bad_request(m),
        Err(e) => unavailable("queue", &e),
    }
}

async fn delete(State(d): State<DeadLetters>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return bad_request(r),
    };
    match d.queue.delete(id).await {
        Ok(true) => Json(json!({"deleted": 1})).into_response(),
        Ok(false) => not_found("no such message"),
        Err(e) => unavailable("queue", &e),
    }
}

async fn purge(State(d): State<DeadLetters>, Query(q): Query<DlqQuery>) -> Response {
    let filter = match q.filter(&d.queue_name) {
        Ok(f) => f,
        Err(r) => return bad_request(r),
    };
    match d.queue.purge(&filter).await {
        Ok(n) => {
            tracing::info!(purged = n, "admin: purge");
            Json(json!({"purged": n})).into_response()
        }
        Err(steadfast_dlq::Error::InvalidInput(m)) => bad_request(m),
        Err(e) => unavailable("queue", &e),
    }
}
