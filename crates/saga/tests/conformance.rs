//! The `SagaStore` conformance suite on every adapter, run through its export
//! (`steadfast_saga::testing`), as a third party's store would run it.

use std::sync::Arc;

use steadfast_saga::testing::conformance;
use steadfast_saga::{MemorySagaStore, SagaStore};

#[tokio::test]
async fn memory_store_conforms() {
    conformance(|clock| async move {
        let store: Arc<dyn SagaStore> = Arc::new(MemorySagaStore::with_clock(Arc::new(clock)));
        Some((store, ()))
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_store_conforms() {
    use steadfast_saga::PostgresSagaStore;
    conformance(|clock| async move {
        let pg = steadfast_testkit::postgres().await?;
        PostgresSagaStore::migrate(pg.pool()).await.unwrap();
        let store: Arc<dyn SagaStore> = Arc::new(PostgresSagaStore::with_clock(
            pg.pool().clone(),
            Arc::new(clock),
        ));
        Some((store, pg))
    })
    .await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_store_conforms() {
    use sqlx::sqlite::SqlitePoolOptions;
    use steadfast_saga::SqliteSagaStore;
    conformance(|clock| async move {
        // A file, not `:memory:`: several connections, real locking.
        let file = steadfast_testkit::SqliteFile::new();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(SqliteSagaStore::connect_options(file.path()))
            .await
            .unwrap();
        SqliteSagaStore::migrate(&pool).await.unwrap();
        let store: Arc<dyn SagaStore> =
            Arc::new(SqliteSagaStore::with_clock(pool, Arc::new(clock)));
        Some((store, file))
    })
    .await;
}
