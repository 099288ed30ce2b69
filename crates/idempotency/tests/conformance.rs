//! One conformance suite per store trait, run against every adapter: memory here, Redis and
//! Postgres on the real servers (through steadfast-testkit).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use steadfast_idempotency::{
    ClaimRequest, DedupStore, Error, Fingerprint, IdempotencyKey, IdempotencyStore, MemoryStore,
    StoreClaim, StoredResponse, Timestamp,
};

const LEASE: Duration = Duration::from_secs(60);
const TTL: Duration = Duration::from_secs(3600);

fn key(name: &str) -> IdempotencyKey {
    IdempotencyKey::parse(&format!("conformance-key-{name}")).unwrap()
}

fn fp(body: &str) -> Fingerprint {
    Fingerprint::of_request("POST", "/transfers", None, body.as_bytes())
}

fn response(tag: &str) -> StoredResponse {
    StoredResponse::new(
        201,
        [
            ("content-type", Bytes::from_static(b"application/json")),
            // Header values are bytes, not necessarily UTF-8.
            ("x-raw", Bytes::from_static(&[0xff, 0x00, 0x7f])),
        ],
        Bytes::from(format!("{{\"tag\":\"{tag}\",\"bin\":\"\u{1F600}\"}}")),
    )
}

async fn claim(
    store: &dyn IdempotencyStore,
    scope: &str,
    k: &IdempotencyKey,
    f: Fingerprint,
    now: Timestamp,
) -> StoreClaim {
    store
        .claim(ClaimRequest {
            scope,
            key: k,
            fingerprint: f,
            now,
            lease: LEASE,
        })
        .await
        .expect("claim")
}

fn fence_of(c: StoreClaim) -> u64 {
    match c {
        StoreClaim::Execute { fence } => fence,
        other => panic!("expected Execute, got {other:?}"),
    }
}

/// The suite for [`IdempotencyStore`]. `store` must be empty for the keys used here.
async fn idempotency_store_suite(store: Arc<dyn IdempotencyStore>) {
    let s = store.as_ref();
    // Stores keep TTLs in real time too (Redis), so logical time starts at the real now and
    // only moves forward.
    let t0 = Timestamp::now();

    // Execute, then in flight, then replay byte-identical.
    let k = key("replay");
    let fence = fence_of(claim(s, "", &k, fp("a"), t0).await);
    let later = t0.plus(Duration::from_secs(10));
    assert_eq!(
        claim(s, "", &k, fp("a"), later).await,
        StoreClaim::InFlight {
            retry_after: LEASE - Duration::from_secs(10)
        }
    );
    assert_eq!(claim(s, "", &k, fp("b"), later).await, StoreClaim::Mismatch);
    s.complete("", &k, fence, &response("one"), TTL, later)
        .await
        .unwrap();
    assert_eq!(
        claim(s, "", &k, fp("a"), later).await,
        StoreClaim::Replay(response("one"))
    );
    assert_eq!(claim(s, "", &k, fp("b"), later).await, StoreClaim::Mismatch);
    // Completing twice is stale: the first result stands.
    assert!(matches!(
        s.complete("", &k, fence, &response("two"), TTL, later)
            .await,
        Err(Error::StaleLease { .. })
    ));
    assert_eq!(
        claim(s, "", &k, fp("a"), later).await,
        StoreClaim::Replay(response("one"))
    );
    // After the TTL the key is free again.
    let after_ttl = later.plus(TTL);
    let fence2 = fence_of(claim(s, "", &k, fp("b"), after_ttl).await);
    assert_ne!(fence2, fence);

    // Scopes never meet.
    let k = key("scoped");
    fence_of(claim(s, "tenant-a", &k, fp("a"), t0).await);
    fence_of(claim(s, "tenant-b", &k, fp("a"), t0).await);
    assert!(matches!(
        claim(s, "tenant-a", &k, fp("a"), t0).await,
        StoreClaim::InFlight { .. }
    ));

    // Release frees the key; a stale release or complete is rejected.
    let k = key("release");
    let fence = fence_of(claim(s, "", &k, fp("a"), t0).await);
    s.release("", &k, fence).await.unwrap();
    assert!(matches!(
        s.release("", &k, fence).await,
        Err(Error::StaleLease { .. })
    ));
    assert!(matches!(
        s.complete("", &k, fence, &response("x"), TTL, t0).await,
        Err(Error::StaleLease { .. })
    ));
    let fence_b = fence_of(claim(s, "", &k, fp("b"), t0).await);
    assert_ne!(fence_b, fence);

    // Fencing: lease expires, someone else claims, the old holder cannot complete.
    let k = key("fencing");
    let old = fence_of(claim(s, "", &k, fp("a"), t0).await);
    let expired = t0.plus(LEASE);
    // An expired lease cannot complete even before anyone re-claims.
    assert!(matches!(
        s.complete("", &k, old, &response("old"), TTL, expired)
            .await,
        Err(Error::StaleLease { .. })
    ));
    let new = fence_of(claim(s, "", &k, fp("a"), expired).await);
    assert!(new > old, "fences increase: {old} then {new}");
    assert!(matches!(
        s.complete("", &k, old, &response("old"), TTL, expired).await,
        Err(Error::StaleLease { fence }) if fence == old
    ));
    assert!(matches!(
        s.release("", &k, old).await,
        Err(Error::StaleLease { .. })
    ));
    s.complete("", &k, new, &response("new"), TTL, expired)
        .await
        .unwrap();
    assert_eq!(
        claim(s, "", &k, fp("a"), expired).await,
        StoreClaim::Replay(response("new"))
    );

    // Concurrency: 100 concurrent claims of one key, exactly one Execute.
    let k = key("concurrent");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let store = Arc::clone(&store);
            let k = k.clone();
            tokio::spawn(async move { claim(store.as_ref(), "", &k, fp("a"), t0).await })
        })
        .collect();
    let mut executes = 0;
    for t in tasks {
        match t.await.unwrap() {
            StoreClaim::Execute { .. } => executes += 1,
            StoreClaim::InFlight { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(executes, 1);

    // An empty body and no headers round-trip too.
    let k = key("empty");
    let fence = fence_of(claim(s, "", &k, fp(""), t0).await);
    let empty = StoredResponse::new(204, Vec::<(&str, Bytes)>::new(), Bytes::new());
    s.complete("", &k, fence, &empty, TTL, t0).await.unwrap();
    assert_eq!(
        claim(s, "", &k, fp(""), t0).await,
        StoreClaim::Replay(empty)
    );
}

/// The suite for [`DedupStore`]. `honours_clock`: whether the window is decided by the `now`
/// passed in (memory, Postgres) or by a server-side TTL (Redis, checked separately).
async fn dedup_store_suite(store: Arc<dyn DedupStore>, honours_clock: bool) {
    let s = store.as_ref();
    let t0 = Timestamp::now();
    let window = Duration::from_secs(300);

    assert!(!s.contains("wamid.A", t0).await.unwrap());
    assert!(s.insert_if_absent("wamid.A", window, t0).await.unwrap());
    assert!(!s.insert_if_absent("wamid.A", window, t0).await.unwrap());
    assert!(s.contains("wamid.A", t0).await.unwrap());
    assert!(!s.contains("wamid.B", t0).await.unwrap());

    s.mark("wamid.B", window, t0, None).await.unwrap();
    assert!(s.contains("wamid.B", t0).await.unwrap());
    assert!(!s.insert_if_absent("wamid.B", window, t0).await.unwrap());
    s.mark("wamid.B", window, t0, Some(Duration::from_millis(42)))
        .await
        .unwrap();
    assert!(s.contains("wamid.B", t0).await.unwrap());

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.insert_if_absent("wamid.C", window, t0).await })
        })
        .collect();
    let mut firsts = 0;
    for t in tasks {
        firsts += usize::from(t.await.unwrap().unwrap());
    }
    assert_eq!(firsts, 1);

    if honours_clock {
        let after = t0.plus(window);
        assert!(!s.contains("wamid.A", after).await.unwrap());
        assert!(s.insert_if_absent("wamid.A", window, after).await.unwrap());
        assert!(s.contains("wamid.A", after).await.unwrap());
        // mark renews the window from its own now.
        s.mark("wamid.B", window, after, None).await.unwrap();
        assert!(
            s.contains("wamid.B", after.plus(window - Duration::from_secs(1)))
                .await
                .unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    idempotency_store_suite(Arc::new(MemoryStore::new())).await;
    dedup_store_suite(Arc::new(MemoryStore::new()), true).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    use steadfast_idempotency::RedisStore;
    let Some(r) = steadfast_testkit::redis().await else {
        return;
    };
    let store = RedisStore::new(r.conn(), r.prefix());
    idempotency_store_suite(Arc::new(store.clone())).await;
    dedup_store_suite(Arc::new(store), false).await;

    // The window is a Redis TTL: check it was set, and bounded by the window.
    let mut conn = r.conn();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}:d:wamid.A", r.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 300_000, "pttl {pttl}");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    use steadfast_idempotency::PostgresStore;
    let Some(pg) = steadfast_testkit::postgres().await else {
        return;
    };
    let store = PostgresStore::new(pg.pool().clone());
    store.migrate().await.unwrap();
    // Migrating twice is a no-op.
    store.migrate().await.unwrap();
    idempotency_store_suite(Arc::new(store.clone())).await;
    dedup_store_suite(Arc::new(store.clone()), true).await;

    // The reaper removes what expired, and only that.
    let far = Timestamp::now().plus(Duration::from_secs(10 * 24 * 3600));
    let removed = store.reap(far).await.unwrap();
    assert!(removed > 0);
    assert_eq!(store.reap(far).await.unwrap(), 0);
}
