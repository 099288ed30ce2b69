//! The `/sagas` endpoints over a saga store's operator: list by state, one saga's steps and
//! log, retry a parked saga, resolve one by hand.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use steadfast_saga::{ListFilter, Operator, SagaId};

use super::{bad_request, unavailable};
use crate::problem::Problem;

/// How a path segment names a saga: the id itself, or something the service derives it from
/// (the webhook takes a message's `wamid`).
pub type IdParser = Arc<dyn Fn(&str) -> Result<SagaId, steadfast_saga::Error> + Send + Sync>;

/// A service's sagas, for [`super::AdminApi::sagas`].
#[derive(Clone)]
pub struct Sagas {
    operator: Operator,
    name: Option<String>,
    id: IdParser,
}

impl std::fmt::Debug for Sagas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sagas")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Sagas {
    /// Every saga `operator` sees; `{id}` is the saga id (its `/` sent as `%2F`).
    pub fn new(operator: Operator) -> Self {
        Self {
            operator,
            name: None,
            id: Arc::new(|id| SagaId::new(id)),
        }
    }

    /// Lists only the sagas of definition `name`.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How `{id}` is read.
    pub fn id_parser(mut self, id: IdParser) -> Self {
        self.id = id;
        self
    }

    pub(super) fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/sagas", get(list))
            .route("/sagas/{id}", get(inspect))
            .route("/sagas/{id}/retry", post(retry))
            .route("/sagas/{id}/resolve", post(resolve))
            .with_state(self.clone())
    }
}

/// Filters of `GET /sagas`.
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

async fn list(State(s): State<Sagas>, Query(q): Query<SagaQuery>) -> Response {
    let mut filter = ListFilter::default();
    if let Some(name) = &s.name {
        filter = filter.name(name.clone());
    }
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
    match s.operator.list(&filter).await {
        Ok(sagas) => Json(json!({ "sagas": sagas })).into_response(),
        Err(e) => saga_failed(&e),
    }
}

async fn inspect(State(s): State<Sagas>, Path(id): Path<String>) -> Response {
    let id = match (s.id)(&id) {
        Ok(id) => id,
        Err(e) => return saga_failed(&e),
    };
    match s.operator.inspect(&id).await {
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

/// `POST /sagas/{id}/retry`: a parked saga back to work with fresh retry budgets; a recovery
/// loop picks it up at its next poll.
async fn retry(State(s): State<Sagas>, Path(id): Path<String>) -> Response {
    let id = match (s.id)(&id) {
        Ok(id) => id,
        Err(e) => return saga_failed(&e),
    };
    match s.operator.retry(&id).await {
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

/// `POST /sagas/{id}/resolve?note=...`: a parked saga marked as handled by hand.
async fn resolve(
    State(s): State<Sagas>,
    Path(id): Path<String>,
    Query(q): Query<ResolveQuery>,
) -> Response {
    let id = match (s.id)(&id) {
        Ok(id) => id,
        Err(e) => return saga_failed(&e),
    };
    let note = q
        .note
        .unwrap_or_else(|| "resolved through the admin API".to_owned());
    match s.operator.resolve(&id, note).await {
        Ok(()) => {
            tracing::warn!(saga = %id, "admin: saga resolved by hand");
            Json(json!({"saga": id, "state": "resolved"})).into_response()
        }
        Err(e) => saga_failed(&e),
    }
}
