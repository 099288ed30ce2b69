//! The `QueueStore` conformance suite on every adapter.

mod suite;

use std::sync::Arc;

use steadfast_dlq::{MemoryQueue, QueueStore};

#[tokio::test]
async fn memory_queue_conforms() {
    suite::run(|config| async move {
        let store: Arc<dyn QueueStore> = Arc::new(MemoryQueue::with_config(config));
        Some((store, Box::new(()) as Box<dyn std::any::Any + Send>))
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_queue_conforms() {
    use steadfast_dlq::PostgresQueue;
    suite::run(|config| async move {
        let pg = steadfast_testkit::postgres().await?;
        PostgresQueue::migrate(pg.pool()).await.unwrap();
        let store: Arc<dyn QueueStore> =
            Arc::new(PostgresQueue::with_config(pg.pool().clone(), config));
        Some((store, Box::new(pg) as Box<dyn std::any::Any + Send>))
    })
    .await;
}
