//! The transfer contract on memory, SQLite and Postgres: auth, validation, 402, the required
//! Idempotency-Key, and races.

mod common;

use common::{API_TOKEN, Backend, Harness, key};
use futures::future::join_all;
use serde_json::json;

async fn funded(backend: Backend) -> Option<Harness> {
    let h = Harness::start(backend).await?;
    h.create_account("acc_a", "RWF").await;
    h.create_account("acc_b", "RWF").await;
    h.create_account("acc_usd", "USD").await;
    h.deposit("acc_a", 1_000, "RWF").await;
    Some(h)
}

async fn contract(backend: Backend) {
    let Some(h) = funded(backend).await else {
        return;
    };
    let body = json!({"from": "acc_a", "to": "acc_b", "amount": 300, "currency": "RWF"});

    // 401 without the token, before anything else (even without a key).
    let res = h
        .http
        .post(format!("{}/v1/transfers", h.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = h
        .http
        .get(format!("{}/v1/accounts/acc_a", h.base))
        .bearer_auth("wrong-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // The key is required and checked.
    let a = h.post("/v1/transfers", None, &body).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.header("content-type"), Some("application/problem+json"));
    for bad in ["short", &"k".repeat(256), "has a space in it ok"] {
        let a = h.post("/v1/transfers", Some(bad), &body).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
        let detail = a.body["detail"].as_str().unwrap();
        assert!(detail.contains("16") && detail.contains("255"), "{detail}");
    }

    // 201 with the contract's body.
    let k = key();
    let first = h.post("/v1/transfers", Some(&k), &body).await;
    assert_eq!(first.status, 201, "{}", first.body);
    for field in ["id", "created_at"] {
        assert!(first.body[field].is_string(), "{}", first.body);
    }
    assert_eq!(first.body["from"], "acc_a");
    assert_eq!(first.body["to"], "acc_b");
    assert_eq!(first.body["amount"], 300);
    assert_eq!(first.body["currency"], "RWF");
    assert_eq!(first.body["status"], "completed");
    assert_eq!(h.balance("acc_a").await, (700, 700));
    assert_eq!(h.balance("acc_b").await, (300, 300));

    // Same key, same body: the first answer, replayed, no second effect.
    let again = h.post("/v1/transfers", Some(&k), &body).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(h.balance("acc_a").await, (700, 700));

    // Same key, different body: 422.
    let other = json!({"from": "acc_a", "to": "acc_b", "amount": 301, "currency": "RWF"});
    assert_eq!(h.post("/v1/transfers", Some(&k), &other).await.status, 422);

    // Keys are scoped per API token; one token is configured, so the scope function is
    // unit-tested (`http::auth`).

    // Validation: 404, 400, 402.
    let cases = [
        (
            json!({"from": "nope", "to": "acc_b", "amount": 1, "currency": "RWF"}),
            404,
        ),
        (
            json!({"from": "acc_a", "to": "nope", "amount": 1, "currency": "RWF"}),
            404,
        ),
        (
            json!({"from": "acc_a", "to": "acc_usd", "amount": 1, "currency": "RWF"}),
            400,
        ),
        (
            json!({"from": "acc_a", "to": "acc_b", "amount": 1, "currency": "USD"}),
            400,
        ),
        (
            json!({"from": "acc_a", "to": "acc_b", "amount": 0, "currency": "RWF"}),
            400,
        ),
        (
            json!({"from": "acc_a", "to": "acc_b", "amount": -5, "currency": "RWF"}),
            400,
        ),
        (
            json!({"from": "acc_a", "to": "acc_a", "amount": 1, "currency": "RWF"}),
            400,
        ),
        (
            json!({"from": "acc_a", "to": "acc_b", "amount": "1", "currency": "RWF"}),
            400,
        ),
        (
            json!({"from": "acc_a", "to": "acc_b", "amount": 701, "currency": "RWF"}),
            402,
        ),
    ];
    for (body, status) in cases {
        let a = h.post("/v1/transfers", Some(&key()), &body).await;
        assert_eq!(a.status, status, "{body}: {}", a.body);
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
        if status == 402 {
            assert_eq!(a.body["type"], "insufficient-funds");
        }
    }
    assert_eq!(h.balance("acc_a").await, (700, 700));

    // Accounts: 200 with the contract's fields, 404.
    let (status, body) = h.account("acc_b").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"id": "acc_b", "currency": "RWF", "balance": 300, "available": 300})
    );
    assert_eq!(h.account("missing").await.0, 404);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_contract_memory() {
    contract(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_contract_postgres() {
    contract(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_contract_sqlite() {
    contract(Backend::Sqlite).await;
}

/// 20 transfers of 100 race for a balance of 1 000 (and some in the other direction): exactly
/// 10 succeed, the rest are 402, and no balance goes below zero.
async fn no_overdraw(backend: Backend) {
    let Some(h) = funded(backend).await else {
        return;
    };
    let body = json!({"from": "acc_a", "to": "acc_b", "amount": 100, "currency": "RWF"});
    let back = json!({"from": "acc_b", "to": "acc_a", "amount": 1_000_000, "currency": "RWF"});
    let answers = join_all((0..20).map(|i| {
        let h = &h;
        let body = if i % 5 == 4 {
            back.clone()
        } else {
            body.clone()
        };
        async move { h.post("/v1/transfers", Some(&key()), &body).await }
    }))
    .await;
    let ok = answers.iter().filter(|a| a.status == 201).count();
    assert!(
        answers.iter().all(|a| a.status == 201 || a.status == 402),
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(ok, 10, "16 debits of 100 from 1 000: exactly 10 fit");
    assert_eq!(h.balance("acc_a").await, (0, 0));
    assert_eq!(h.balance("acc_b").await, (1_000, 1_000));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_never_overdraw_memory() {
    no_overdraw(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_never_overdraw_postgres() {
    no_overdraw(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_never_overdraw_sqlite() {
    no_overdraw(Backend::Sqlite).await;
}

/// 10 concurrent requests with one key make one transfer: the others are the replay of its
/// answer or 409 with Retry-After while it runs.
async fn one_key_one_transfer(backend: Backend) {
    let Some(h) = funded(backend).await else {
        return;
    };
    let body = json!({"from": "acc_a", "to": "acc_b", "amount": 100, "currency": "RWF"});
    let k = key();
    let answers = join_all((0..10).map(|_| h.post("/v1/transfers", Some(&k), &body))).await;
    let mut ids = std::collections::HashSet::new();
    for a in &answers {
        match a.status {
            201 => {
                ids.insert(a.body["id"].as_str().unwrap().to_owned());
            }
            409 => assert!(a.header("retry-after").is_some(), "{}", a.body),
            s => panic!("unexpected {s}: {}", a.body),
        }
    }
    assert_eq!(
        ids.len(),
        1,
        "one transfer, answered (or replayed) the same"
    );
    assert_eq!(h.balance("acc_a").await, (900, 900));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_key_concurrently_makes_one_transfer_memory() {
    one_key_one_transfer(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_key_concurrently_makes_one_transfer_postgres() {
    one_key_one_transfer(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_key_concurrently_makes_one_transfer_sqlite() {
    one_key_one_transfer(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer_from_memory() {
    let Some(h) = Harness::start(Backend::Memory).await else {
        return;
    };
    let res = h
        .http
        .get(format!("{}/health", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["storage"], "memory");
    let _ = h.post("/v1/transfers", None, &json!({})).await;
    let text = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("payments_http_requests_total"), "{text}");
    // The API token is not an admin token.
    let res = h
        .http
        .get(format!("{}/admin/ledger", h.base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    h.finish().await;
}
