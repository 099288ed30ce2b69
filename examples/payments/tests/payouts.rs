//! Payouts as sagas against the fake provider.

mod common;

use std::time::Duration;

use common::{Backend, Harness, Settings, eventually, key, options};
use serde_json::{Value, json};

async fn funded(backend: Backend) -> Option<Harness> {
    let h = Harness::start(backend).await?;
    h.create_account("acc_a", "RWF").await;
    h.deposit("acc_a", 1_000, "RWF").await;
    Some(h)
}

async fn payout(h: &Harness, msisdn: &str, amount: i64) -> String {
    let a = h
        .post(
            "/v1/payouts",
            Some(&key()),
            &json!({"account": "acc_a", "msisdn": msisdn, "amount": amount, "currency": "RWF"}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body["status"], "pending");
    a.body["id"].as_str().unwrap().to_owned()
}

async fn get_payout(h: &Harness, id: &str) -> Value {
    h.http
        .get(format!("{}/v1/payouts/{id}", h.base))
        .bearer_auth(common::API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn ends(h: &Harness, id: &str, status: &str) {
    eventually(&format!("payout {id} {status}"), async || {
        get_payout(h, id).await["status"] == status
    })
    .await;
}

async fn succeeds_after_two_503s(backend: Backend) {
    let Some(h) = funded(backend).await else {
        return;
    };
    h.fake.script([503, 503]);
    let id = payout(&h, "250788123456", 300).await;
    // Reserved at once: available drops, balance does not (unless it settled already).
    let seen = h.balance("acc_a").await;
    assert!(seen == (1_000, 700) || seen == (700, 700), "{seen:?}");
    ends(&h, &id, "succeeded").await;
    assert_eq!(h.balance("acc_a").await, (700, 700));
    let p = get_payout(&h, &id).await;
    assert_eq!(
        p,
        json!({"id": id, "account": "acc_a", "amount": 300, "currency": "RWF", "status": "succeeded"})
    );
    let requests = h.fake.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 202]);
    assert!(
        requests
            .iter()
            .all(|r| r.reference_id.as_deref() == Some(id.as_str()))
    );
    assert!(requests.iter().all(|r| r.authorized));
    assert_eq!(requests[2].body["externalId"], id.as_str());
    assert_eq!(requests[2].body["msisdn"], "250788123456");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payout_retried_through_503s_succeeds_with_one_reference_memory() {
    succeeds_after_two_503s(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payout_retried_through_503s_succeeds_with_one_reference_postgres() {
    succeeds_after_two_503s(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payout_retried_through_503s_succeeds_with_one_reference_sqlite() {
    succeeds_after_two_503s(Backend::Sqlite).await;
}

async fn refused_and_failed_release(backend: Backend) {
    let Some(h) = funded(backend).await else {
        return;
    };
    let refused = payout(&h, "250788120000", 400).await;
    let failed = payout(&h, "250788121111", 500).await;
    ends(&h, &refused, "failed").await;
    ends(&h, &failed, "failed").await;
    assert_eq!(h.balance("acc_a").await, (1_000, 1_000));
    // The refused one was asked once (a 400 is not retried).
    let asked = h
        .fake
        .requests()
        .iter()
        .filter(|r| r.reference_id.as_deref() == Some(refused.as_str()))
        .count();
    assert_eq!(asked, 1);
    // Their sagas end compensated: the release (which fails the payout) is the compensation's
    // step, and the saga's own `compensated` is written just after it, so wait for it.
    eventually("both sagas compensated", async || {
        let sagas = h.admin_get("/sagas?state=compensated").await;
        sagas["sagas"].as_array().unwrap().len() == 2
    })
    .await;
    let log = h.admin_get(&format!("/sagas/{failed}")).await;
    assert_eq!(log["saga"]["state"], "compensated", "{log}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_or_failed_payouts_release_their_reservation_memory() {
    refused_and_failed_release(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_or_failed_payouts_release_their_reservation_postgres() {
    refused_and_failed_release(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_or_failed_payouts_release_their_reservation_sqlite() {
    refused_and_failed_release(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payout_validation_and_idempotency() {
    let Some(h) = funded(Backend::Memory).await else {
        return;
    };
    let body =
        json!({"account": "acc_a", "msisdn": "250788123456", "amount": 5_000, "currency": "RWF"});
    assert_eq!(h.post("/v1/payouts", Some(&key()), &body).await.status, 402);
    let body =
        json!({"account": "acc_a", "msisdn": "250788123456", "amount": 100, "currency": "RWF"});
    assert_eq!(h.post("/v1/payouts", None, &body).await.status, 400);
    let k = key();
    let first = h.post("/v1/payouts", Some(&k), &body).await;
    let again = h.post("/v1/payouts", Some(&k), &body).await;
    assert_eq!(first.status, 202);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let id = first.body["id"].as_str().unwrap();
    ends(&h, id, "succeeded").await;
    assert_eq!(h.balance("acc_a").await, (900, 900));
    for bad in [
        json!({"account": "nope", "msisdn": "250788123456", "amount": 1, "currency": "RWF"}),
        json!({"account": "acc_a", "msisdn": "12", "amount": 1, "currency": "RWF"}),
        json!({"account": "acc_a", "msisdn": "250788123456", "amount": 1, "currency": "USD"}),
    ] {
        let a = h.post("/v1/payouts", Some(&key()), &bad).await;
        assert!(a.status == 400 || a.status == 404, "{bad}: {}", a.body);
    }
    let res = h
        .http
        .get(format!("{}/v1/payouts/po_missing", h.base))
        .bearer_auth(common::API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    h.finish().await;
}

/// A process killed while its payout waits on a down provider: another process on the same
/// Postgres resumes the saga from its log once the lease lapses, and settles it.
#[test]
fn a_payout_survives_its_process_and_settles_after_restart() {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(schema) = main.block_on(steadfast_testkit::postgres()) else {
        return;
    };
    let schema = std::sync::Arc::new(schema);
    let (fake, url) = main.block_on(common::fake_provider());
    fake.set_down(true);

    // The first process runs on a runtime of its own, so that dropping it kills every task
    // of it (the saga in flight included), as a crash would.
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let id = doomed.block_on(async {
        let h = Harness::on_own_pool(
            Backend::Postgres,
            schema.clone(),
            fake.clone(),
            url.clone(),
            &Settings::default(),
            options(),
        )
        .await;
        h.create_account("acc_a", "RWF").await;
        h.deposit("acc_a", 1_000, "RWF").await;
        let id = payout(&h, "250788123456", 250).await;
        eventually("the provider is being asked", async || {
            fake.requests().len() >= 2
        })
        .await;
        let mut h = h;
        h.schema = None; // the test's own handle drops the schema at the end
        std::mem::forget(h); // no graceful stop: the runtime is dropped below
        id
    });
    doomed.shutdown_timeout(Duration::from_millis(10));

    main.block_on(async {
        fake.set_down(false);
        let h = Harness::on(
            Backend::Postgres,
            Some(schema.clone()),
            fake.clone(),
            url.clone(),
            &Settings::default(),
            options(),
        )
        .await;
        assert_eq!(get_payout(&h, &id).await["status"], "pending");
        ends(&h, &id, "succeeded").await;
        assert_eq!(h.balance("acc_a").await, (750, 750));
        let refs: std::collections::HashSet<_> = fake
            .requests()
            .into_iter()
            .map(|r| r.reference_id.unwrap())
            .collect();
        assert_eq!(refs.len(), 1, "one X-Reference-Id across both processes");
        assert_eq!(fake.callbacks_delivered(), 1);
        h.finish().await;
    });
}
