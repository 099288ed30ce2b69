//! `/momo/callback`: the checks in the contract's order, the durable queue, the worker.

mod common;

use common::{Backend, Harness, Settings, eventually};
use serde_json::json;

fn collection(tx: &str, account: &str, amount: i64) -> serde_json::Value {
    json!({"transactionId": tx, "externalId": account, "type": "collection",
           "amount": amount, "currency": "RWF", "status": "SUCCESSFUL"})
}

async fn checks_and_effects(backend: Backend) {
    let Some(h) = Harness::start(backend).await else {
        return;
    };
    h.create_account("acc_a", "RWF").await;

    // Wrong or missing signature: 401.
    let body = collection("tx-1", "acc_a", 500).to_string();
    assert_eq!(h.callback_raw(body.as_bytes(), false).await.status(), 401);
    let res = h
        .http
        .post(format!("{}/momo/callback", h.base))
        .header("x-signature", "00".repeat(32))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Malformed (signed): 400 {"error":"invalid_payload"}.
    for bad in [&b"not json"[..], br#"{"transactionId":"x"}"#] {
        let res = h.callback_raw(bad, true).await;
        assert_eq!(res.status(), 400);
        assert_eq!(
            res.json::<serde_json::Value>().await.unwrap(),
            json!({"error": "invalid_payload"})
        );
    }

    // Valid: 200 {"status":"success"}, credited once; a repeat is 200 with no second effect.
    let res = h.callback(&collection("tx-1", "acc_a", 500)).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-ratelimit-limit"));
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "success"})
    );
    eventually("credited", async || h.balance("acc_a").await.0 == 500).await;
    for _ in 0..3 {
        assert_eq!(
            h.callback(&collection("tx-1", "acc_a", 500)).await.status(),
            200
        );
    }
    // A FAILED or PENDING collection changes nothing; a later deposit shows the worker has
    // moved past the repeats.
    let mut failed = collection("tx-2", "acc_a", 999);
    failed["status"] = json!("FAILED");
    assert_eq!(h.callback(&failed).await.status(), 200);
    h.deposit("acc_a", 1, "RWF").await;
    assert_eq!(h.balance("acc_a").await.0, 501);

    // A callback for an unknown payout or account is parked, not dropped.
    let unknown = json!({"transactionId": "tx-3", "externalId": "po_nope", "type": "disbursement",
                         "amount": 5, "currency": "RWF", "status": "SUCCESSFUL"});
    assert_eq!(h.callback(&unknown).await.status(), 200);
    assert_eq!(
        h.callback(&collection("tx-4", "nobody", 5)).await.status(),
        200
    );
    eventually("parked", async || {
        h.admin_get("/callbacks").await.as_array().unwrap().len() == 2
    })
    .await;
    let parked = h.admin_get("/callbacks").await;
    let kinds: Vec<_> = parked
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["errors"][0]["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.contains(&"unknown_payout".to_owned()), "{parked}");
    assert!(kinds.contains(&"unknown_account".to_owned()), "{parked}");

    // Once the account exists, an operator replays its callback and it is credited.
    h.create_account("nobody", "RWF").await;
    let id = parked
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["payload"]["externalId"] == "nobody")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = h
        .http
        .post(format!("{}/admin/callbacks/{id}/replay", h.base))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    eventually("replayed", async || h.balance("nobody").await.0 == 5).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_checks_and_effects_memory() {
    checks_and_effects(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_checks_and_effects_postgres() {
    checks_and_effects(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_checks_and_effects_sqlite() {
    checks_and_effects(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_outside_the_allow_list_is_403_before_the_signature() {
    let settings = Settings {
        allowed_ips: vec!["196.223.0.0/16".into()],
        ..Settings::default()
    };
    let Some(h) = Harness::with(Backend::Memory, settings).await else {
        return;
    };
    // Signed and valid, but from 127.0.0.1.
    let res = h.callback(&collection("tx-1", "acc_a", 5)).await;
    assert_eq!(res.status(), 403);
    // Unsigned from the wrong network: still 403 (the IP is checked first).
    assert_eq!(h.callback_raw(b"junk", false).await.status(), 403);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_is_429_with_retry_after_and_rate_headers() {
    let settings = Settings {
        per_minute: 3,
        burst: 3,
        ..Settings::default()
    };
    let Some(h) = Harness::with(Backend::Memory, settings).await else {
        return;
    };
    h.create_account("acc_a", "RWF").await;
    for i in 0..3 {
        let res = h
            .callback(&collection(&format!("tx-{i}"), "acc_a", 5))
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-ratelimit-limit"], "3");
    }
    let res = h.callback(&collection("tx-9", "acc_a", 5)).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    // An unsigned request is refused (401) before it can use the budget.
    assert_eq!(h.callback_raw(b"{}", false).await.status(), 401);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_is_503_so_the_provider_retries() {
    let Some(h) = Harness::start(Backend::Postgres).await else {
        return;
    };
    h.create_account("acc_a", "RWF").await;
    h.pool().unwrap().close().await;
    let res = h.callback(&collection("tx-1", "acc_a", 5)).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let text = res.text().await.unwrap();
    assert!(
        !text.to_lowercase().contains("sqlx") && !text.contains("pool"),
        "{text}"
    );
    // The store is gone: no invariant to read; stop without it.
    let mut h = h;
    if let Some(r) = h.running.take() {
        r.stop().await;
    }
}
