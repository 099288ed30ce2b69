//! The runner on SQLite: two runners (two pools on one database file) recover one set of
//! sagas together and never run the same saga at once; sagas complete or compensate through
//! the SQLite log.
#![cfg(feature = "sqlite")]

mod two_runners;

use std::sync::Arc;

use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use steadfast_saga::{SagaStore, SqliteSagaStore};
use steadfast_testkit::SqliteFile;

async fn pool(file: &SqliteFile) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(SqliteSagaStore::connect_options(file.path()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_on_one_sqlite_file_never_run_the_same_saga_at_once() {
    let file = SqliteFile::new();
    let first_pool = pool(&file).await;
    SqliteSagaStore::migrate(&first_pool).await.unwrap();
    let stores: [Arc<dyn SagaStore>; 2] = [
        Arc::new(SqliteSagaStore::new(first_pool)),
        Arc::new(SqliteSagaStore::new(pool(&file).await)),
    ];
    two_runners::never_share_a_saga(stores).await;
}
