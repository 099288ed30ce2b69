//! SQLite-only behaviour: the write lock's busy timeout, extreme times. (The shared semantics
//! are in the conformance suites.)
#![cfg(feature = "sqlite")]

use std::time::Duration;

use bytes::Bytes;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{ConnectOptions, Connection};
use steadfast_idempotency::{
    ClaimRequest, DedupStore, Error, Fingerprint, IdempotencyKey, IdempotencyStore, SqliteStore,
    StoreClaim, StoredResponse, Timestamp,
};
use steadfast_testkit::SqliteFile;

async fn store(file: &SqliteFile, busy: Duration) -> SqliteStore {
    let pool = SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(SqliteStore::connect_options(file.path()).busy_timeout(busy))
        .await
        .unwrap();
    let store = SqliteStore::new(pool);
    store.migrate().await.unwrap();
    store
}

fn key() -> IdempotencyKey {
    IdempotencyKey::parse("order-0001-abcdef").unwrap()
}

#[tokio::test]
async fn a_write_lock_held_past_the_busy_timeout_is_store_unavailable() {
    let file = SqliteFile::new();
    let store = store(&file, Duration::from_millis(50)).await;
    let mut holder = SqliteStore::connect_options(file.path())
        .connect()
        .await
        .unwrap();
    let tx = holder.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let k = key();
    let req = ClaimRequest {
        scope: "",
        key: &k,
        fingerprint: Fingerprint::of_bytes(b"a"),
        now: Timestamp::from_millis(1_000),
        lease: Duration::from_secs(30),
    };
    let err = store.claim(req).await.unwrap_err();
    assert!(matches!(err, Error::StoreUnavailable(_)), "{err}");
    let err = store
        .insert_if_absent("wamid.A", Duration::from_secs(60), req.now)
        .await
        .unwrap_err();
    assert!(err.is_store_unavailable(), "{err}");
    tx.rollback().await.unwrap();
    assert!(matches!(
        store.claim(req).await.unwrap(),
        StoreClaim::Execute { .. }
    ));
}

#[tokio::test]
async fn extreme_times_and_durations_saturate_instead_of_panicking() {
    let file = SqliteFile::new();
    let store = store(&file, Duration::from_secs(5)).await;
    let k = key();
    // At the end of time a claim still answers (its lease saturates, so it is already over).
    let end = ClaimRequest {
        scope: "end",
        key: &k,
        fingerprint: Fingerprint::of_bytes(b"a"),
        now: Timestamp::from_millis(u64::MAX),
        lease: Duration::MAX,
    };
    assert!(matches!(
        store.claim(end).await.unwrap(),
        StoreClaim::Execute { .. }
    ));
    let now = Timestamp::from_millis(4_000_000_000_000);
    let req = ClaimRequest {
        scope: "tenant",
        key: &k,
        fingerprint: Fingerprint::of_bytes(b"a"),
        now,
        lease: Duration::MAX,
    };
    let StoreClaim::Execute { fence } = store.claim(req).await.unwrap() else {
        panic!("a free key is granted");
    };
    let response = StoredResponse::new(200, [("content-type", "text/plain")], Bytes::from("ok"));
    store
        .complete("tenant", &k, fence, &response, Duration::MAX, now)
        .await
        .unwrap();
    assert!(
        store
            .insert_if_absent("wamid.Z", Duration::MAX, now)
            .await
            .unwrap()
    );
    store
        .mark("wamid.Z", Duration::MAX, now, Some(Duration::MAX))
        .await
        .unwrap();
    // A fence no store ever issued is refused, not wrapped.
    let err = store.release("tenant", &k, u64::MAX).await.unwrap_err();
    assert!(matches!(err, Error::StaleLease { .. }), "{err}");
}
