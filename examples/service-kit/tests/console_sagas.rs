//! The kit's console and admin API over a real saga store (the saga crate's memory store): a
//! saga parked by a step failing after its pivot shows Retry and Resolve (confirmed), and
//! Resolve, called as the page does (session cookie and CSRF header), marks it resolved.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use steadfast_saga::{
    MemorySagaStore, Operator, RunOutcome, RunnerConfig, Saga, SagaId, SagaRunner, SagaStore,
    State, Step, StepContext, StepError,
};
use steadfast_service_kit::admin::{AdminApi, Sagas, guard};
use steadfast_service_kit::console::Console;
use steadfast_service_kit::secret::Secret;
use tower::ServiceExt;

const TOKEN: &str = "a-kit-test-admin-token-0123";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Input {
    reference: String,
}

/// `reserve`, `pay` (the pivot), then `notify`, which fails for good: the saga parks.
async fn parked_saga(store: Arc<dyn SagaStore>) -> SagaId {
    let saga = Saga::builder("refund")
        .step(
            Step::new("reserve", |_: StepContext<Input>| async { Ok(()) })
                .compensate(|_: StepContext<Input>, (): ()| async { Ok(()) }),
        )
        .step(Step::new("pay", |_: StepContext<Input>| async { Ok(()) }).pivot())
        .step(Step::new("notify", |_: StepContext<Input>| async {
            Err::<(), _>(StepError::permanent("the mailer refused the address"))
        }))
        .build()
        .unwrap();
    let config = RunnerConfig::builder().owner("kit-test").build().unwrap();
    let runner = SagaRunner::new(saga, store, config);
    let id = SagaId::new("refund/abc").unwrap();
    let outcome = runner
        .run(
            id.clone(),
            Input {
                reference: "ref-abc".into(),
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, RunOutcome::Finished(State::Failed)),
        "{outcome:?}"
    );
    id
}

fn app(store: Arc<dyn SagaStore>) -> Router {
    let api = AdminApi::new(Secret::new(TOKEN)).sagas(Sagas::new(Operator::new(store)));
    let admin: Router = Router::new().nest(
        "/admin",
        api.routes()
            .route_layer(axum::middleware::from_fn_with_state(
                api.guard(),
                guard::require,
            )),
    );
    let console = Console::new(Secret::new(TOKEN), admin.clone())
        .brand("Kit test")
        .sagas("at once");
    admin.merge(console.router())
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_parked_saga_is_resolved_from_its_page() {
    let store: Arc<dyn SagaStore> = Arc::new(MemorySagaStore::new());
    let id = parked_saga(store.clone()).await;
    let app = app(store.clone());

    let login = Request::post("/admin/ui/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={TOKEN}")))
        .unwrap();
    let (status, headers, _) = send(&app, login).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let get = |path: &str| {
        Request::get(path)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, list) = send(&app, get("/admin/ui/sagas?state=failed")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains("href=\"/admin/ui/sagas/refund%2Fabc\""),
        "{list}"
    );
    let (status, _, page) = send(&app, get("/admin/ui/sagas/refund%2Fabc")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("data-url=\"/admin/sagas/refund%2Fabc/retry\""),
        "{page}"
    );
    let resolve =
        "/admin/sagas/refund%2Fabc/resolve?note=resolved%20by%20hand%20in%20the%20console";
    assert!(page.contains(&format!("data-url=\"{resolve}\"")), "{page}");
    assert!(
        page.contains("data-confirm=\"Mark this saga as handled by hand?"),
        "{page}"
    );
    assert!(page.contains("the mailer refused the address"), "{page}");
    let start = page.find("name=\"steadfast-csrf\" content=\"").unwrap() + 31;
    let csrf = &page[start..start + 64];

    let post = |csrf: Option<&str>| {
        let mut r = Request::post(resolve).header(header::COOKIE, &cookie);
        if let Some(c) = csrf {
            r = r.header("x-steadfast-csrf", c);
        }
        r.body(Body::empty()).unwrap()
    };
    let (status, _, _) = send(&app, post(None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF header, no change");
    let (status, _, body) = send(&app, post(Some(csrf))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let log = store.load(&id).await.unwrap().unwrap();
    assert_eq!(log.summary.state, State::Resolved);
    // Resolved: nothing left to do on its page, and a second resolve is refused (409).
    let (_, _, page) = send(&app, get("/admin/ui/sagas/refund%2Fabc")).await;
    assert!(!page.contains("/resolve"), "{page}");
    let (status, _, _) = send(&app, post(Some(csrf))).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn without_a_token_the_admin_api_answers_401() {
    let store: Arc<dyn SagaStore> = Arc::new(MemorySagaStore::new());
    let app = app(store);
    let (status, headers, body) = send(
        &app,
        Request::get("/admin/sagas").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    assert!(body.contains("Bearer <ADMIN_TOKEN>"), "{body}");
    let (status, _, body) = send(
        &app,
        Request::get("/admin/sagas")
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("{\"sagas\":[]"), "{body}");
}
