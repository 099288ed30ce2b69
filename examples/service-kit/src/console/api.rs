//! The console's reads go through the admin API too: its router, called in process with the
//! configured token. A page shows exactly what `curl /admin/...` would, and a filter or a
//! field means the same in both.

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::secret::Secret;

/// The admin API, in process.
#[derive(Clone)]
pub struct Api {
    router: Router,
    authorization: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// An admin API answer other than 2xx: its status and problem detail.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The problem's `detail` (or its `title`).
    pub detail: String,
}

impl Api {
    /// The admin API `router` (paths `/admin/...`), called with `token`.
    pub fn new(router: Router, token: &Secret) -> Self {
        Self {
            router,
            authorization: format!("Bearer {}", token.expose()),
        }
    }

    /// `GET <path_and_query>` (e.g. `/admin/dlq?limit=5`), its JSON body.
    pub async fn get(&self, path_and_query: &str) -> Result<Value, ApiError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path_and_query)
            .header(header::AUTHORIZATION, &self.authorization)
            .body(Body::empty())
            .map_err(|e| ApiError {
                status: StatusCode::BAD_REQUEST,
                detail: format!("not a valid path: {e}"),
            })?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let detail = json
            .get("detail")
            .or_else(|| json.get("title"))
            .and_then(Value::as_str)
            .unwrap_or("the admin API refused the request")
            .to_owned();
        Err(ApiError { status, detail })
    }
}
