//! The ops console (`/admin/ui`) of the payments service, on a real listener and the memory
//! stores: login (a wrong token refused), every page renders, and its actions reach the admin
//! API (a parked callback replayed, the provider breaker opened and closed), with the CSRF
//! header required on the cookie.

mod common;

use common::{ADMIN_TOKEN, Backend, Harness, eventually, key};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::{Value, json};

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn login(h: &Harness, token: &str) -> (StatusCode, Option<String>) {
    let res = client()
        .post(format!("{}/admin/ui/login", h.base))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status(), cookie)
}

/// The `name=value` part of a `Set-Cookie`.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn page(h: &Harness, cookie: &str, path: &str) -> (StatusCode, HeaderMap, String) {
    let res = client()
        .get(format!("{}{path}", h.base))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    (status, headers, res.text().await.unwrap())
}

fn csrf_of(html: &str) -> String {
    let start = html.find("name=\"steadfast-csrf\" content=\"").unwrap() + 31;
    html[start..start + 64].to_owned()
}

async fn call(
    h: &Harness,
    method: &str,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = client()
        .request(method.parse().unwrap(), format!("{}{path}", h.base))
        .header(header::COOKIE, cookie);
    if let Some(csrf) = csrf {
        req = req.header("x-steadfast-csrf", csrf);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_token_is_refused_and_the_right_one_logs_in() {
    let Some(h) = Harness::start(Backend::Memory).await else {
        return;
    };
    let (status, cookie) = login(&h, "not-the-admin-token-0123").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(cookie, None);
    // Without a session the pages send the browser to the login form.
    let (status, headers, _) = page(&h, "", "/admin/ui/dead-letters").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/admin/ui/login");

    let (status, cookie) = login(&h, ADMIN_TOKEN).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains(ADMIN_TOKEN));
    // The cookie also opens the admin API (reads); a forged one does not.
    let (status, _, _) = page(&h, &pair(&cookie), "/admin/ledger").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = page(&h, "steadfast_admin=1.2.3", "/admin/ledger").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_renders_with_the_payments_navigation() {
    let Some(h) = Harness::start(Backend::Memory).await else {
        return;
    };
    h.create_account("acc_a", "RWF").await;
    h.deposit("acc_a", 1_000, "RWF").await;
    // A payout the fake provider fails (msisdn ending 1111): its saga ends compensated.
    let res = h
        .post(
            "/v1/payouts",
            Some(&key()),
            &json!({"account": "acc_a", "msisdn": "250788121111", "amount": 100, "currency": "RWF"}),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.body);
    let payout = res.body["id"].as_str().unwrap().to_owned();
    eventually("the saga compensated", async || {
        h.admin_get(&format!("/sagas/{payout}")).await["saga"]["state"] == "compensated"
    })
    .await;
    h.app_state.checks.refresh().await;

    let cookie = pair(&login(&h, ADMIN_TOKEN).await.1.unwrap());
    let pages = [
        "/admin/ui",
        "/admin/ui/overview/live",
        "/admin/ui/dead-letters",
        "/admin/ui/breakers",
        "/admin/ui/sagas",
        "/admin/ui/ledger",
    ];
    for path in pages {
        let (status, headers, html) = page(&h, &cookie, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'"),
            "{path}"
        );
        assert!(!html.contains("problem"), "{path}: {html}");
        if path != "/admin/ui/overview/live" {
            assert!(html.contains("Steadfast payments"), "{path}");
            assert!(html.contains("href=\"/admin/ui/ledger\""), "{path}");
            // No webhook page in this console.
            assert!(!html.contains("/admin/ui/conversations"), "{path}");
        }
    }
    let (_, _, overview) = page(&h, &cookie, "/admin/ui").await;
    // The callback queue, one reading taken (a dot per state until a minute has passed).
    assert!(overview.contains("momo-callbacks"), "{overview}");
    assert!(
        overview.contains("<circle") || overview.contains("<polyline"),
        "{overview}"
    );
    let (_, _, ledger) = page(&h, &cookie, "/admin/ui/ledger").await;
    assert!(ledger.contains("badge good\">ok<"), "{ledger}");
    let (_, _, breakers) = page(&h, &cookie, "/admin/ui/breakers").await;
    assert!(
        breakers.contains("data-breaker=\"momo-provider\""),
        "{breakers}"
    );
    assert!(!breakers.contains("<h2>Services</h2>"));
    let (_, _, sagas) = page(&h, &cookie, "/admin/ui/sagas?state=compensated").await;
    assert!(
        sagas.contains(&format!("href=\"/admin/ui/sagas/{payout}\"")),
        "{sagas}"
    );
    let (status, _, saga) = page(&h, &cookie, &format!("/admin/ui/sagas/{payout}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        saga.contains("compensated") && saga.contains("request"),
        "{saga}"
    );
    // Not parked: neither retry nor resolve is offered, and the API refuses both (409).
    assert!(!saga.contains("/resolve"), "{saga}");
    let csrf = csrf_of(&saga);
    for action in ["retry", "resolve"] {
        let (status, body) = call(
            &h,
            "POST",
            &format!("/admin/sagas/{payout}/{action}"),
            &cookie,
            Some(&csrf),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {body}");
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parked_callback_is_replayed_and_the_breaker_controlled_from_the_console() {
    let Some(h) = Harness::start(Backend::Memory).await else {
        return;
    };
    // A callback for an account that does not exist yet is parked.
    let cb = json!({"transactionId": "txparkedcallback", "externalId": "acc_later", "type": "collection",
                    "amount": 7, "currency": "RWF", "status": "SUCCESSFUL"});
    assert_eq!(h.callback(&cb).await.status(), 200);
    eventually("parked", async || {
        h.admin_get("/callbacks").await.as_array().unwrap().len() == 1
    })
    .await;
    let cookie = pair(&login(&h, ADMIN_TOKEN).await.1.unwrap());
    let (_, _, list) = page(&h, &cookie, "/admin/ui/dead-letters").await;
    assert!(list.contains("txparkedcallback"), "{list}");
    assert!(list.contains("unknown_account"), "{list}");
    let id = h.admin_get("/callbacks").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, _, message) = page(&h, &cookie, &format!("/admin/ui/dead-letters/{id}")).await;
    let replay = format!("/admin/dlq/{id}/replay");
    assert!(
        message.contains(&format!("data-url=\"{replay}\"")),
        "{message}"
    );
    let csrf = csrf_of(&message);

    // On the cookie, a change without the CSRF header is refused.
    let (status, _) = call(&h, "POST", &replay, &cookie, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    h.create_account("acc_later", "RWF").await;
    let (status, body) = call(&h, "POST", &replay, &cookie, Some(&csrf)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["replayed"], 1);
    eventually("credited", async || h.balance("acc_later").await.0 == 7).await;
    let (_, _, message) = page(&h, &cookie, &format!("/admin/ui/dead-letters/{id}")).await;
    assert!(message.contains("badge good\">done<"), "{message}");

    // The provider breaker: opened and closed through the admin API the page calls.
    let open = "/admin/breakers/momo-provider/open";
    let (status, body) = call(&h, "POST", open, &cookie, Some(&csrf)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["breakers"][0]["state"], "forced_open");
    let (_, _, breakers) = page(&h, &cookie, "/admin/ui/breakers").await;
    assert!(breakers.contains("badge bad\">forced_open<"), "{breakers}");
    let stats = h.admin_get("/stats").await;
    assert_eq!(stats["breakers_open"], json!(["momo-provider"]), "{stats}");
    let (status, body) = call(
        &h,
        "POST",
        "/admin/breakers/momo-provider/close",
        &cookie,
        Some(&csrf),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["breakers"][0]["state"], "closed");
    h.finish().await;
}
