//! The ops console (`/admin/ui`) in process on the in-memory stores: login and its cookie,
//! wrong tokens, CSRF on cookie-authenticated admin calls, and pages that mask phone numbers
//! and escape what messages carry. The browser end-to-end test is `ui-tests/` (scripts/test-ui).

mod common;

use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use common::*;
use http::{Request, StatusCode, header};
use steadfast_webhook::assemble::App;

const SENDER: &str = "250788123456";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn login(router: &Router, token: &str, https: bool) -> (StatusCode, Option<String>) {
    let mut req = Request::post("/admin/ui/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if https {
        req = req.header("x-forwarded-proto", "https");
    }
    let body = format!("token={}", token.replace(' ', "+"));
    let (status, headers, _) = send(router, req.body(Body::from(body)).unwrap()).await;
    let cookie = headers
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, cookie)
}

/// Logs in; the `name=value` to send back.
async fn session(router: &Router) -> String {
    session_with(router, ADMIN_TOKEN).await
}

async fn session_with(router: &Router, token: &str) -> String {
    let (status, cookie) = login(router, token, false).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    cookie.unwrap().split(';').next().unwrap().to_owned()
}

async fn page(router: &Router, cookie: &str, path: &str) -> (StatusCode, http::HeaderMap, String) {
    let req = Request::get(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let (s, h, b) = send(router, req).await;
    (s, h, text(&b))
}

/// The CSRF token a page renders for its scripts.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"steadfast-csrf\" content=\"").unwrap() + 31;
    html[at..at + 64].to_owned()
}

async fn post(router: &Router, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut req = Request::post(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (s, _, b) = send(router, req.body(Body::empty()).unwrap()).await;
    (s, text(&b))
}

#[tokio::test]
async fn login_sets_a_session_cookie_with_the_right_flags() {
    let app = App::build(memory_config("")).await.unwrap();
    let router = app.router();
    let (status, cookie) = login(&router, ADMIN_TOKEN, false).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.unwrap();
    assert!(cookie.starts_with("steadfast_admin="), "{cookie}");
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/admin",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: no Secure flag");
    assert!(
        !cookie.contains(ADMIN_TOKEN),
        "the cookie does not carry the token"
    );
    // X-Forwarded-Proto is not believed without a trusted proxy...
    let (_, cookie) = login(&router, ADMIN_TOKEN, true).await;
    assert!(!cookie.unwrap().contains("Secure"));
    app.shutdown().await;

    // ...and is with one: the cookie is then Secure.
    let app = App::build(memory_config("[http]\ntrust_forwarded_for = true\n"))
        .await
        .unwrap();
    let (_, cookie) = login(&app.router(), ADMIN_TOKEN, true).await;
    assert!(cookie.unwrap().contains("; Secure"));
    app.shutdown().await;
}

#[tokio::test]
async fn a_wrong_token_or_cookie_is_refused() {
    let app = App::build(memory_config("")).await.unwrap();
    let router = app.router();
    for wrong in [
        "",
        "not-the-admin-token-at-all",
        &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1],
    ] {
        let (status, cookie) = login(&router, wrong, false).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert_eq!(cookie, None, "no cookie for {wrong:?}");
    }
    let metrics = app.state().metrics.render();
    assert!(metrics.contains("webhook_admin_auth_failures_total{reason=\"mismatch\"}"));

    // Pages without a session go to the login form; a forged cookie is no session.
    for cookie in [
        "",
        "steadfast_admin=1800000000.00.00",
        "steadfast_admin=junk",
    ] {
        let (status, headers, _) = page(&router, cookie, "/admin/ui/dead-letters").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{cookie:?}");
        assert_eq!(headers[header::LOCATION], "/admin/ui/login");
        if !cookie.is_empty() {
            let (status, _, _) = page(&router, cookie, "/admin/dlq").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{cookie:?}");
        }
    }
    // A cookie made under another token (a rotated one) is no session either.
    let mut rotated = memory_config("");
    rotated.admin_token = Some(steadfast_webhook::config::Secret::new(
        "another-admin-token-0123456",
    ));
    let other = App::build(rotated).await.unwrap();
    let foreign = session_with(&other.router(), "another-admin-token-0123456").await;
    let (status, _, _) = page(&router, &foreign, "/admin/ui").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    other.shutdown().await;
    app.shutdown().await;
}

#[tokio::test]
async fn cookie_authenticated_changes_need_the_csrf_header() {
    let app = App::build(memory_config("")).await.unwrap();
    let router = app.router();
    let cookie = session(&router).await;
    let (status, _, html) = page(&router, &cookie, "/admin/ui/breakers").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&html);
    // Reads need no CSRF token.
    let (status, _, _) = page(&router, &cookie, "/admin/breakers").await;
    assert_eq!(status, StatusCode::OK);

    let open = "/admin/breakers/whatsapp-graph-api/open";
    let (status, body) = post(&router, open, &[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("x-steadfast-csrf"));
    let (status, _) = post(
        &router,
        open,
        &[("cookie", &cookie), ("x-steadfast-csrf", &"0".repeat(64))],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let state = || app.services().graph.breaker().state().as_str();
    assert_eq!(state(), "closed", "nothing changed without the token");

    let (status, body) = post(
        &router,
        open,
        &[("cookie", &cookie), ("x-steadfast-csrf", &csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(state(), "forced_open");
    // API clients with the bearer token are unchanged: no CSRF header needed.
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let (status, _) = post(
        &router,
        "/admin/breakers/whatsapp-graph-api/close",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state(), "closed");

    // Another session's CSRF token does not fit this one.
    let second = session(&router).await;
    let (_, _, html) = page(&router, &second, "/admin/ui").await;
    let (status, _) = post(
        &router,
        open,
        &[("cookie", &cookie), ("x-steadfast-csrf", &csrf_of(&html))],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Logout takes the CSRF header too, and clears the cookie.
    let (status, _) = post(&router, "/admin/ui/logout", &[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let req = Request::post("/admin/ui/logout")
        .header("cookie", &cookie)
        .header("x-steadfast-csrf", &csrf)
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&router, req).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cleared = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("steadfast_admin=;") && cleared.contains("Max-Age=0"));
    app.shutdown().await;
}

#[tokio::test]
async fn pages_mask_numbers_and_escape_what_messages_carry() {
    let (down_url, downstream) = fakes::start_downstream().await;
    // A 4xx from the downstream dead-letters at once.
    downstream.fail_with.store(404, Ordering::SeqCst);
    let app = App::build(memory_config(&format!(
        "[[services]]\nname = \"jobs\"\nendpoints = [\"{down_url}/jobs\"]\nkeywords = [\"job\"]\n[routing]\ndefault_service = \"jobs\"\n"
    )))
    .await
    .unwrap();
    let router = app.router();
    let hostile = "<script>alert(1)</script> \"quoted\" & call 250788999888";
    let body = serde_json::to_vec(&serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "250780000100", "phone_number_id": "106540352242922"},
            "messages": [{"from": SENDER, "id": "wamid.CONSOLE.1", "timestamp": now_unix().to_string(),
                "type": "text", "text": {"body": hostile}}]
        }}]}]
    }))
    .unwrap();
    let (status, _, _) = send(&router, signed(&body)).await;
    assert_eq!(status, StatusCode::OK);
    let queue = app.state().ingestor.queue().clone();
    let mut id = String::new();
    eventually("the message to dead-letter", async || {
        let dead = queue
            .list(
                &steadfast_dlq::Filter::dead(),
                steadfast_dlq::Page::first(10),
            )
            .await
            .unwrap();
        dead.first().map(|m| id = m.id.to_string()).is_some()
    })
    .await;

    let cookie = session(&router).await;
    let paths = [
        "/admin/ui".to_owned(),
        "/admin/ui/overview/live".to_owned(),
        "/admin/ui/dead-letters".to_owned(),
        "/admin/ui/dead-letters?service=jobs&since=2020-01-01T00:00".to_owned(),
        format!("/admin/ui/dead-letters/{id}"),
        format!("/admin/ui/conversations?number=%2B{SENDER}"),
        "/admin/ui/breakers".to_owned(),
        "/admin/ui/sagas?state=failed".to_owned(),
    ];
    for path in &paths {
        let (status, headers, html) = page(&router, &cookie, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        assert!(!html.contains(SENDER), "{path} shows the sender's number");
        assert!(
            !html.contains("250788999888"),
            "{path} shows a number from the text"
        );
        assert!(
            !html.contains("<script>alert"),
            "{path} lets the payload's markup through"
        );
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'"),
            "{path}"
        );
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
    }
    let (_, _, list) = page(&router, &cookie, "/admin/ui/dead-letters").await;
    assert!(list.contains("wamid.CONSOLE.1") && list.contains("+250788***456"));
    assert!(list.contains("downstream_http_404"));
    let (_, _, message) = page(&router, &cookie, &format!("/admin/ui/dead-letters/{id}")).await;
    assert!(
        message.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{message}"
    );
    assert!(message.contains("+250788***888"));
    assert!(message.contains(&format!("data-url=\"/admin/dlq/{id}/replay\"")));
    let (_, _, conversation) = page(
        &router,
        &cookie,
        &format!("/admin/ui/conversations?number={SENDER}"),
    )
    .await;
    assert!(
        conversation.contains("+250788***456")
            && conversation.contains("id=\"conversation-state\"")
    );
    let (_, _, other) = page(&router, &cookie, "/admin/ui/dead-letters?service=nope").await;
    assert!(other.contains("No message matches."));
    let (_, _, bad_time) = page(&router, &cookie, "/admin/ui/dead-letters?since=yesterday").await;
    assert!(bad_time.contains("is not a time"));
    // A message id that is not one is the admin API's 400, shown on the page.
    let (status, _, missing) = page(&router, &cookie, "/admin/ui/dead-letters/%3Cb%3E").await;
    assert_eq!(status, StatusCode::OK);
    assert!(missing.contains("&lt;b&gt;") && !missing.contains("<b>"));
    app.shutdown().await;
}

#[tokio::test]
async fn the_console_is_on_the_ops_listener_only() {
    let app = App::build(memory_config("")).await.unwrap();
    let state = app.state().clone();
    let public = steadfast_webhook::http::public_router(state.clone());
    let ops = steadfast_webhook::http::ops_router(state);
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    assert_eq!(
        send(&public, get("/admin/ui/login")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(send(&ops, get("/admin/ui/login")).await.0, StatusCode::OK);
    let (status, headers, css) = send(&ops, get("/admin/ui/assets/console.css")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(!css.is_empty());
    assert_eq!(send(&ops, get("/admin/ui/")).await.0, StatusCode::SEE_OTHER);
    app.shutdown().await;
}
