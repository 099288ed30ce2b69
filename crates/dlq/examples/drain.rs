//! Drain measurement on Postgres: enqueue N messages, then one `Worker` with a no-op handler
//! drains them; prints messages/second. Uses an isolated schema (steadfast-testkit).
//!
//! `cargo run -p steadfast-dlq --features postgres --release --example drain -- 20000 16`
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use steadfast_dlq::{NewMessage, Outcome, PostgresQueue, QueueAdmin, QueueStore, State, Worker};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let Some(schema) = steadfast_testkit::postgres().await else {
        eprintln!("Postgres unreachable");
        return;
    };
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .connect_with(schema.connect_options())
        .await
        .expect("pool");
    PostgresQueue::migrate(&pool).await.expect("migrate");
    let store = Arc::new(PostgresQueue::new(pool));
    for start in (0..n).step_by(500) {
        let batch = (start..(start + 500).min(n))
            .map(|i| {
                NewMessage::new(
                    "drain",
                    json!({ "from": "250788000000", "text": format!("m {i}") }),
                )
                .dedup_key(format!("wamid.{i}"))
            })
            .collect();
        store.enqueue_batch(batch).await.expect("enqueue");
    }
    let worker = Worker::builder(store.clone(), "drain")
        .concurrency(concurrency)
        .lease(Duration::from_secs(60))
        .poll_interval(Duration::from_millis(50))
        .build()
        .expect("worker");
    let watch = store.clone();
    let started = Instant::now();
    let report = worker
        .run(|_m| async { Outcome::Ack }, async move {
            loop {
                let stats = watch.stats().await.expect("stats");
                if stats
                    .iter()
                    .any(|s| s.queue == "drain" && s.count(State::Done) >= n)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "drained {} of {n} with concurrency {concurrency} in {secs:.2} s: {:.0} messages/s",
        report.acked,
        report.acked as f64 / secs
    );
}
