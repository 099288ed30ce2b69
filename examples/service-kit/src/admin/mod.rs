//! The admin API both services expose for what they share: dead letters, breakers, sagas and
//! the queue's statistics, behind the admin token ([`guard`]).
//!
//! A service builds an [`AdminApi`] with what it has and merges [`AdminApi::routes`] into its
//! own admin router (nested at `/admin`), then puts [`AdminApi::guard`] around the whole:
//!
//! | route | does |
//! |---|---|
//! | `GET /stats` | queue depth by state (last reading, a sample a minute over the last hour), throughput, breakers open; from memory |
//! | `GET /dlq?state=dead&error_kind=&since=&until=&limit=&after=` | messages, paged by id |
//! | `GET /dlq/{id}`, `DELETE /dlq/{id}` | one message; delete it |
//! | `POST /dlq/{id}/replay`, `POST /dlq/{id}/run-now` | dead (or retrying) back to pending; retrying due now |
//! | `POST /dlq/replay`, `POST /dlq/purge` | bulk, by the same filters |
//! | `GET /breakers`, `POST /breakers/{name}/{open,close,reset}` | every breaker; manual control |
//! | `GET /sagas?state=&limit=`, `GET /sagas/{id}` | sagas by state; one saga's steps and log |
//! | `POST /sagas/{id}/retry`, `POST /sagas/{id}/resolve?note=` | a parked saga back to work; marked handled by hand |
//!
//! Errors are problem+json: 400 bad input, 404 unknown, 409 wrong state, 503 a store down
//! (its cause logged, never sent).

pub mod breakers;
pub mod dead_letters;
pub mod guard;
pub mod sagas;
mod stats;

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::problem::Problem;
use crate::queue_history::QueueHistory;
use crate::secret::Secret;

pub use breakers::{BreakerSource, NamedBreaker};
pub use dead_letters::DeadLetters;
pub use sagas::Sagas;

/// Reads a queue's recent statistics (from memory).
pub type HistorySource = Arc<dyn Fn() -> QueueHistory + Send + Sync>;

/// The shared admin endpoints of one service; see the module doc.
#[derive(Clone)]
pub struct AdminApi {
    token: Secret,
    dead_letters: Option<DeadLetters>,
    history: Option<HistorySource>,
    breakers: Option<Arc<dyn BreakerSource>>,
    sagas: Option<Sagas>,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi")
            .field("dead_letters", &self.dead_letters.is_some())
            .field("breakers", &self.breakers.is_some())
            .field("sagas", &self.sagas.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminApi {
    /// An admin API behind `token`, with no endpoints yet.
    pub fn new(token: Secret) -> Self {
        Self {
            token,
            dead_letters: None,
            history: None,
            breakers: None,
            sagas: None,
        }
    }

    /// The `/dlq` endpoints over a queue.
    pub fn dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = Some(dead_letters);
        self
    }

    /// `GET /stats`, from the history `read` returns (needs [`Self::dead_letters`] for the
    /// queue's name).
    pub fn queue_history(mut self, read: HistorySource) -> Self {
        self.history = Some(read);
        self
    }

    /// The `/breakers` endpoints over `source`.
    pub fn breakers(mut self, source: Arc<dyn BreakerSource>) -> Self {
        self.breakers = Some(source);
        self
    }

    /// The `/sagas` endpoints.
    pub fn sagas(mut self, sagas: Sagas) -> Self {
        self.sagas = Some(sagas);
        self
    }

    /// The routes (relative to where the admin API is nested, `/admin`), without the token
    /// check: put [`Self::guard`] around them and the service's own.
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let mut router = Router::new();
        if let Some(d) = &self.dead_letters {
            router = router.merge(d.routes());
            if let Some(h) = &self.history {
                router = router.merge(stats::routes(
                    d.queue_name().to_owned(),
                    h.clone(),
                    self.breakers.clone(),
                ));
            }
        }
        if let Some(b) = &self.breakers {
            router = router.merge(breakers::routes(b.clone()));
        }
        if let Some(s) = &self.sagas {
            router = router.merge(s.routes());
        }
        router
    }

    /// The token check for the whole admin router: `Authorization: Bearer <token>`, or the
    /// console's session cookie (with its CSRF header for a change); see [`guard`].
    pub fn guard(&self) -> guard::Guard {
        guard::Guard::new(self.token.clone())
    }
}

pub(crate) fn bad_request(detail: impl Into<String>) -> Response {
    Problem::new(StatusCode::BAD_REQUEST)
        .detail(detail)
        .into_response()
}

/// 503 for a store error. The driver's text (hosts, users, SQL) goes to the log only.
pub(crate) fn unavailable(store: &'static str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(store, error = %error, "admin: store error");
    Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .detail(format!("{store} store unavailable; retry later"))
        .into_response()
}

pub(crate) fn not_found(detail: impl Into<String>) -> Response {
    Problem::new(StatusCode::NOT_FOUND)
        .detail(detail)
        .into_response()
}
