//! The `SnapshotStore` conformance suite on every adapter, run through its export
//! (`steadfast_state_machine::testing`) as a third party's store would run it:
//! `MemorySnapshots` here, `PostgresSnapshots` on the real Postgres (feature `postgres`, via
//! steadfast-testkit).

use std::sync::Arc;

use steadfast_state_machine::MemorySnapshots;
use steadfast_state_machine::testing::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_snapshots_conform() {
    conformance(Arc::new(MemorySnapshots::new())).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_snapshots_conform() {
    use steadfast_state_machine::PostgresSnapshots;
    let Some(pg) = steadfast_testkit::postgres().await else {
        return;
    };
    PostgresSnapshots::migrate(pg.pool()).await.unwrap();
    // Idempotent: a second run (another process starting) applies nothing and does not fail.
    PostgresSnapshots::migrate(pg.pool()).await.unwrap();
    conformance(Arc::new(PostgresSnapshots::new(pg.pool().clone()))).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_snapshots_conform() {
    use sqlx::sqlite::SqlitePoolOptions;
    use steadfast_state_machine::SqliteSnapshots;
    // A file, not `:memory:`: several connections, real locking.
    let file = steadfast_testkit::SqliteFile::new();
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(SqliteSnapshots::connect_options(file.path()))
        .await
        .unwrap();
    SqliteSnapshots::migrate(&pool).await.unwrap();
    SqliteSnapshots::migrate(&pool).await.unwrap();
    conformance(Arc::new(SqliteSnapshots::new(pool))).await;
}
