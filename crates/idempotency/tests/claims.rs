//! The claim facade on the memory store: leases, dropped leases, body limit, store down.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use steadfast_idempotency::{
    Claim, ClaimRequest, Config, DedupStore, Deduplicator, Error, Fingerprint, Idempotency,
    IdempotencyKey, IdempotencyStore, ManualClock, MemoryStore, StoreClaim, StoreDown,
    StoredResponse, Timestamp,
};

/// A store whose backend is unreachable: every call fails like a refused connection.
#[derive(Debug)]
struct Unreachable;

fn refused() -> Error {
    Error::store(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
}

#[async_trait]
impl IdempotencyStore for Unreachable {
    async fn claim(&self, _: ClaimRequest<'_>) -> Result<StoreClaim, Error> {
        Err(refused())
    }
    async fn complete(
        &self,
        _: &str,
        _: &IdempotencyKey,
        _: u64,
        _: &StoredResponse,
        _: Duration,
        _: Timestamp,
    ) -> Result<(), Error> {
        Err(refused())
    }
    async fn release(&self, _: &str, _: &IdempotencyKey, _: u64) -> Result<(), Error> {
        Err(refused())
    }
}

#[async_trait]
impl DedupStore for Unreachable {
    async fn insert_if_absent(&self, _: &str, _: Duration, _: Timestamp) -> Result<bool, Error> {
        Err(refused())
    }
    async fn contains(&self, _: &str, _: Timestamp) -> Result<bool, Error> {
        Err(refused())
    }
    async fn mark(
        &self,
        _: &str,
        _: Duration,
        _: Timestamp,
        _: Option<Duration>,
    ) -> Result<(), Error> {
        Err(refused())
    }
}

fn key() -> IdempotencyKey {
    IdempotencyKey::parse("claims-test-key-0001").unwrap()
}

fn fp() -> Fingerprint {
    Fingerprint::of_bytes(b"request")
}

fn ok_response(body: &'static [u8]) -> StoredResponse {
    StoredResponse::new(200, Vec::<(&str, Bytes)>::new(), Bytes::from_static(body))
}

#[tokio::test]
async fn lease_expiry_lets_a_retry_take_over_and_fences_the_old_holder() {
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let claims = Idempotency::new(Arc::new(MemoryStore::new()), Config::default())
        .with_clock(Arc::new(clock.clone()));
    let Claim::Execute(old) = claims.claim("", &key(), fp()).await.unwrap() else {
        panic!("first claim executes")
    };
    assert!(matches!(
        claims.claim("", &key(), fp()).await.unwrap(),
        Claim::InFlight { retry_after } if retry_after == Duration::from_secs(60)
    ));
    clock.advance(Duration::from_secs(60));
    let Claim::Execute(new) = claims.claim("", &key(), fp()).await.unwrap() else {
        panic!("expired lease is taken over")
    };
    assert!(new.fence() > old.fence());
    assert!(matches!(
        old.complete(&ok_response(b"old")).await,
        Err(Error::StaleLease { .. })
    ));
    new.complete(&ok_response(b"new")).await.unwrap();
    assert!(matches!(
        claims.claim("", &key(), fp()).await.unwrap(),
        Claim::Replay(r) if r.body() == &b"new"[..]
    ));
    let stats = claims.stats();
    assert_eq!((stats.executed, stats.in_flight, stats.replayed), (2, 1, 1));
}

#[tokio::test]
async fn a_dropped_lease_releases_the_key() {
    let claims = Idempotency::new(Arc::new(MemoryStore::new()), Config::default());
    let Claim::Execute(lease) = claims.claim("", &key(), fp()).await.unwrap() else {
        panic!("first claim executes")
    };
    // The handler's future was cancelled (client went away): the lease is dropped unsettled.
    drop(lease);
    // The release runs in a spawned task; let it run.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        claims.claim("", &key(), fp()).await.unwrap(),
        Claim::Execute(_)
    ));
}

#[tokio::test]
async fn a_panicking_handler_releases_the_key() {
    let claims = Idempotency::new(Arc::new(MemoryStore::new()), Config::default());
    let Claim::Execute(lease) = claims.claim("", &key(), fp()).await.unwrap() else {
        panic!("first claim executes")
    };
    let handler = tokio::spawn(async move {
        let _lease = lease;
        panic!("handler bug");
    });
    assert!(handler.await.unwrap_err().is_panic());
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        claims.claim("", &key(), fp()).await.unwrap(),
        Claim::Execute(_)
    ));
}

#[tokio::test]
async fn oversized_bodies_are_not_stored_and_release_the_key() {
    let config = Config::builder().max_response_bytes(4).build().unwrap();
    let claims = Idempotency::new(Arc::new(MemoryStore::new()), config);
    let Claim::Execute(lease) = claims.claim("", &key(), fp()).await.unwrap() else {
        panic!("first claim executes")
    };
    assert!(matches!(
        lease.complete(&ok_response(b"12345")).await,
        Err(Error::ResponseTooLarge { size: 5, limit: 4 })
    ));
    assert_eq!(claims.stats().too_large, 1);
    assert!(matches!(
        claims.claim("", &key(), fp()).await.unwrap(),
        Claim::Execute(_)
    ));
}

#[tokio::test]
async fn store_down_fails_closed_by_default_and_open_when_asked() {
    let closed = Idempotency::new(Arc::new(Unreachable), Config::default());
    assert!(matches!(
        closed.claim("", &key(), fp()).await,
        Err(e) if e.is_store_unavailable()
    ));
    assert_eq!(closed.stats().store_error, 1);

    let open = Idempotency::new(
        Arc::new(Unreachable),
        Config::builder()
            .store_down(StoreDown::FailOpen)
            .build()
            .unwrap(),
    );
    assert!(matches!(
        open.claim("", &key(), fp()).await.unwrap(),
        Claim::Unprotected
    ));
    assert_eq!(open.stats().fail_open, 1);
}

#[tokio::test]
async fn dedup_fails_open_by_default_and_reports_typed_errors() {
    let dedup = Deduplicator::new(Arc::new(Unreachable), Duration::from_secs(300));
    assert!(
        dedup
            .first_seen("wamid.X", Duration::from_secs(300))
            .await
            .unwrap()
    );
    assert_eq!(dedup.stats().fail_open, 1);
    assert!(
        dedup
            .seen("wamid.X")
            .await
            .unwrap_err()
            .is_store_unavailable()
    );
    assert!(
        dedup
            .mark_seen("wamid.X")
            .await
            .unwrap_err()
            .is_store_unavailable()
    );

    let strict = Deduplicator::new(Arc::new(Unreachable), Duration::from_secs(300))
        .store_down(StoreDown::FailClosed);
    assert!(
        strict
            .first_seen("wamid.X", Duration::from_secs(300))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn dedup_window_and_validation() {
    let clock = ManualClock::new(Timestamp::from_millis(5_000));
    let dedup = Deduplicator::new(Arc::new(MemoryStore::new()), Duration::from_secs(300))
        .with_clock(Arc::new(clock.clone()));
    let window = Duration::from_secs(300);
    assert!(dedup.first_seen("wamid.1", window).await.unwrap());
    assert!(!dedup.first_seen("wamid.1", window).await.unwrap());
    clock.advance(window);
    assert!(dedup.first_seen("wamid.1", window).await.unwrap());
    assert!(!dedup.seen("wamid.2").await.unwrap());
    dedup
        .mark_processed("wamid.2", Duration::from_millis(12))
        .await
        .unwrap();
    assert!(dedup.seen("wamid.2").await.unwrap());
    assert!(matches!(
        dedup.first_seen("", window).await,
        Err(Error::InvalidKey(_))
    ));
    assert!(matches!(
        dedup.first_seen("has space", window).await,
        Err(Error::InvalidKey(_))
    ));
    assert!(matches!(
        dedup.first_seen("wamid.3", Duration::ZERO).await,
        Err(Error::Config(_))
    ));
    let stats = dedup.stats();
    assert_eq!((stats.first_seen, stats.duplicate), (3, 2));
}
