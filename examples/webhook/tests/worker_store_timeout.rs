//! The worker against a queue database that stops answering (steadfast-testkit isolates the
//! test in its own schema). Its Postgres sits behind a black-hole proxy: connections stay
//! open, nothing comes back, no error is ever raised. Only the worker's own bounds
//! (`storage.store_timeout`) can end its store calls.

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use common::*;
use http::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use steadfast_webhook::assemble::App;
use steadfast_webhook::config::{Config, Overrides};

/// `webhook_worker_store_errors_total` as rendered now (the recorder is process-wide; only
/// this file's one worker counts into it).
fn store_errors() -> u64 {
    steadfast_webhook::metrics::install()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("webhook_worker_store_errors_total "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

fn text_message(id: &str, from: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("text_message.json")).unwrap();
    let value = &mut v["entry"][0]["changes"][0]["value"];
    value["contacts"][0]["wa_id"] = from.into();
    let m = &mut value["messages"][0];
    m["id"] = id.into();
    m["from"] = from.into();
    m["timestamp"] = chrono::Utc::now().timestamp().to_string().into();
    m["text"]["body"] = "jobs".into();
    serde_json::to_vec(&v).unwrap()
}

/// Instance A runs the worker on a pool behind the proxy; instance B (worker off, direct
/// pool) takes Meta's deliveries while A's path to the database is a black hole, as a second
/// instance in another zone would. Before the bound, A's first claim in the stall waited
/// forever: no error, no progress, nothing in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_queue_database_does_not_hang_the_worker() {
    let Some(pg) = steadfast_testkit::postgres().await else {
        return;
    };
    let (down_url, downstream) = fakes::start_downstream().await;
    let (graph_url, graph) = fakes::start_graph().await;
    let toml = |worker: bool| {
        format!(
            r#"
[whatsapp]
app_secret = "{SECRET}"
verify_token = "{VERIFY_TOKEN}"
access_token = "test-access-token"
graph_api_url = "{graph_url}"
[admin]
token = "{ADMIN_TOKEN}"
[storage]
database_url = "{db}"
store_timeout_ms = 300
[worker]
enabled = {worker}
poll_interval_ms = 20
backoff_initial_ms = 50
backoff_max_ms = 200
lease_seconds = 1
[conversation]
sweep_interval_seconds = 3600
[[services]]
name = "jobs"
endpoints = ["{down_url}/jobs"]
keywords = ["jobs"]
[routing]
default_service = "jobs"
"#,
            db = steadfast_testkit::database_url(),
        )
    };
    let config = |worker| {
        Config::from_toml(&toml(worker), &Default::default(), &Overrides::default()).unwrap()
    };

    let base: PgConnectOptions = steadfast_testkit::database_url().parse().unwrap();
    let proxy = Proxy::start(&format!("{}:{}", base.get_host(), base.get_port())).await;
    // sqlx's default acquire wait (30 s): the prompt failures must come from the worker's
    // own bounds, not from the pool.
    let proxied = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(pg.connect_options().host("127.0.0.1").port(proxy.port))
        .await
        .unwrap();
    let a = App::build_with_pool(config(true), Some(proxied))
        .await
        .unwrap();
    let b = App::build_with_pool(config(false), Some(pg.pool().clone()))
        .await
        .unwrap();
    let b_router = b.router();

    // Healthy first: A processes what B takes in.
    let (s, _, _) = send(
        &b_router,
        signed(&text_message("wamid.STALL.0", "250788000500")),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    eventually("processed before the stall", async || {
        downstream.delivered("wamid.STALL.0") == 1
    })
    .await;

    proxy.stall();
    let before = store_errors();
    // The worker's claims keep failing after 300 ms each, and it keeps claiming.
    eventually(
        "the worker's store calls time out, again and again",
        async || store_errors() >= before + 3,
    )
    .await;
    let ids: Vec<String> = (1..=3).map(|i| format!("wamid.STALL.{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let (s, _, b) = send(
            &b_router,
            signed(&text_message(id, &format!("25078800050{}", i + 1))),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    }
    assert_eq!(
        downstream.total_delivered(),
        1,
        "nothing moves during the stall"
    );

    proxy.restore();
    for (i, id) in ids.iter().enumerate() {
        eventually("queued messages processed after the restore", async || {
            downstream.delivered(id) == 1
        })
        .await;
        eventually("reply sent", async || {
            !graph.texts_to(&format!("25078800050{}", i + 1)).is_empty()
        })
        .await;
    }
    assert_eq!(downstream.total_delivered(), 4, "each once");

    // Nor does a stall hold the shutdown.
    proxy.stall();
    tokio::time::timeout(Duration::from_secs(5), a.shutdown())
        .await
        .expect("shutdown is bounded while the database stalls");
    proxy.restore();
    b.shutdown().await;
}
