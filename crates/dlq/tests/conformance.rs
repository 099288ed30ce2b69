//! The queue conformance suite (`QueueStore` and `QueueAdmin`) on every adapter, run through
//! its export (`steadfast_dlq::testing`), as a third party's store would run it.

use std::sync::Arc;

use steadfast_dlq::testing::conformance;
use steadfast_dlq::{MemoryQueue, Queue};

#[tokio::test]
async fn memory_queue_conforms() {
    conformance(|config| async move {
        let store: Arc<dyn Queue> = Arc::new(MemoryQueue::with_config(config));
        Some((store, ()))
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_queue_conforms() {
    use steadfast_dlq::PostgresQueue;
    conformance(|config| async move {
        let pg = steadfast_testkit::postgres().await?;
        PostgresQueue::migrate(pg.pool()).await.unwrap();
        let store: Arc<dyn Queue> = Arc::new(PostgresQueue::with_config(pg.pool().clone(), config));
        Some((store, pg))
    })
    .await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_queue_conforms() {
    use sqlx::sqlite::SqlitePoolOptions;
    use steadfast_dlq::SqliteQueue;
    conformance(|config| async move {
        // A file, not `:memory:`: several connections, real locking.
        let file = steadfast_testkit::SqliteFile::new();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(SqliteQueue::connect_options(file.path()))
            .await
            .unwrap();
        SqliteQueue::migrate(&pool).await.unwrap();
        let store: Arc<dyn Queue> = Arc::new(SqliteQueue::with_config(pool, config));
        Some((store, file))
    })
    .await;
}
