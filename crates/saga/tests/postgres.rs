//! The runner on the real Postgres: two runners (two pools, as two processes would have)
//! recover one set of sagas together and never run the same saga at once; sagas complete or
//! compensate through the Postgres log.
#![cfg(feature = "postgres")]

mod two_runners;

use std::sync::Arc;

use sqlx::postgres::PgPoolOptions;
use steadfast_saga::{PostgresSagaStore, SagaStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_on_one_postgres_never_run_the_same_saga_at_once() {
    let Some(pg) = steadfast_testkit::postgres().await else {
        return;
    };
    PostgresSagaStore::migrate(pg.pool()).await.unwrap();
    let second_pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(pg.connect_options())
        .await
        .unwrap();
    let stores: [Arc<dyn SagaStore>; 2] = [
        Arc::new(PostgresSagaStore::new(pg.pool().clone())),
        Arc::new(PostgresSagaStore::new(second_pool)),
    ];
    two_runners::never_share_a_saga(stores).await;
}
