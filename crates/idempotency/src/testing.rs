//! The conformance suites every store must pass, for adapter authors (feature `testing`).
//!
//! One suite per store trait: [`idempotency_store`] for an [`IdempotencyStore`] (claims, in
//! flight, replay byte for byte, mismatch, fencing, release, TTL, scopes, 100 concurrent claims
//! of one key) and [`dedup_store`] for a [`DedupStore`] (insert-if-absent, mark, 50 concurrent
//! inserts, the window). Each takes a store that holds none of the suite's keys (they start with
//! `conformance-key-` and `wamid.`) and panics with an assertion message at the first violation,
//! which is what a test wants. Our memory, Redis and Postgres stores run these same suites
//! (`tests/conformance.rs`). The suites spawn tasks: run them on a multi-threaded tokio runtime.
//!
//! ```rust,no_run
//! use std::sync::Arc;
//! use steadfast_idempotency::MemoryStore;
//! use steadfast_idempotency::testing::{DedupWindow, dedup_store, idempotency_store};
//!
//! # async fn demo() {
//! idempotency_store(Arc::new(MemoryStore::new())).await;
//! dedup_store(Arc::new(MemoryStore::new()), DedupWindow::CallerClock).await;
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::{
    ClaimRequest, DedupStore, Error, Fingerprint, IdempotencyKey, IdempotencyStore, StoreClaim,
    StoredResponse, Timestamp,
};
use bytes::Bytes;

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

/// Runs the [`IdempotencyStore`] suite; panics at the first violation.
///
/// `store` must hold none of the suite's keys (a fresh store, schema or key prefix). Logical
/// time starts at the real now and only moves forward, as stores may keep TTLs in real time.
pub async fn idempotency_store(store: Arc<dyn IdempotencyStore>) {
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

/// Who decides when a [`DedupStore`]'s window ends, which [`dedup_store`] checks accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupWindow {
    /// The `now` passed to each call (memory, Postgres): the suite moves that clock past the
    /// window and checks the id is forgotten, and that `mark` renews the window from its `now`.
    CallerClock,
    /// A server-side TTL in real time (Redis): the suite cannot move that clock, so it skips
    /// the expiry checks; check the TTL you set in your own test.
    ServerTtl,
}

/// Runs the [`DedupStore`] suite; panics at the first violation.
///
/// `store` must hold none of the suite's ids (`wamid.A`, `wamid.B`, `wamid.C`); `window` says
/// whether expiry follows the caller's clock, which the suite then checks too.
pub async fn dedup_store(store: Arc<dyn DedupStore>, window: DedupWindow) {
    let honours_clock = window == DedupWindow::CallerClock;
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
