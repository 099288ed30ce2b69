//! The conformance suite every [`SagaStore`] must pass, for adapter authors (feature
//! `testing`).
//!
//! [`conformance`] runs each case against a fresh store that the caller builds around the
//! [`ManualClock`] it is handed, so time moves only when a case says so. A violation panics
//! with the case's name on stderr (`conformance case: ...`). Our own memory and Postgres
//! stores run this same suite (`tests/conformance.rs`).
//!
//! ```rust,no_run
//! use std::sync::Arc;
//! use steadfast_saga::{MemorySagaStore, SagaStore};
//!
//! # async fn demo() {
//! steadfast_saga::testing::conformance(|clock| async move {
//!     let store: Arc<dyn SagaStore> = Arc::new(MemorySagaStore::with_clock(Arc::new(clock)));
//!     Some((store, ()))
//! })
//! .await;
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use crate::{
    Created, Entry, Error, Lease, ListFilter, ManualClock, NewSaga, SagaId, SagaStore, State,
};

const LEASE: Duration = Duration::from_secs(30);
const SEC: Duration = Duration::from_secs(1);

/// Runs every case of the suite, each on a fresh store, and panics at the first violation.
///
/// `make` builds an empty store reading time from the clock it is given and returns it with
/// a guard, anything that must live as long as the store (a test schema; `()` if nothing),
/// dropped after the store at the end of the case. Return `None` to skip the rest of the
/// suite, e.g. when the database is not reachable.
pub async fn conformance<F, Fut, G>(make: F)
where
    F: Fn(ManualClock) -> Fut,
    Fut: Future<Output = Option<(Arc<dyn SagaStore>, G)>>,
{
    macro_rules! case {
        ($name:ident) => {{
            // Whole seconds: Postgres keeps microseconds, so nanoseconds would not round-trip.
            let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_795_000_000));
            let Some((store, guard)) = make(clock.clone()).await else {
                return;
            };
            eprintln!("conformance case: {}", stringify!($name));
            $name(&*store, &clock).await;
            drop(store);
            drop(guard);
        }};
    }
    case!(create_is_idempotent_and_leased);
    case!(entries_keep_order_outputs_and_times);
    case!(states_follow_entries_and_final_entries_clear_the_lease);
    case!(stale_fence_cannot_write);
    case!(claim_takes_expired_active_sagas_of_one_definition);
    case!(claim_respects_the_limit_and_heartbeat_extends);
    case!(release_makes_claimable_at_once);
    case!(concurrent_claims_never_share_a_saga);
    case!(operator_entries_check_state);
    case!(list_filters_by_state_and_name);
}

fn id(s: &str) -> SagaId {
    SagaId::new(s).unwrap()
}

fn new_saga(i: &str, name: &str) -> NewSaga {
    NewSaga {
        id: id(i),
        name: name.to_owned(),
        version: 1,
        input: json!({ "amount": 100, "saga": i }),
    }
}

async fn create(store: &dyn SagaStore, i: &str, name: &str) -> Lease {
    match store.create(new_saga(i, name), "a", LEASE).await.unwrap() {
        Created::New(lease) => lease,
        other => panic!("expected a new saga, got {other:?}"),
    }
}

fn started(step: &str) -> Entry {
    Entry::StepStarted {
        step: step.to_owned(),
        attempt: 1,
    }
}

async fn create_is_idempotent_and_leased(store: &dyn SagaStore, clock: &ManualClock) {
    let lease = create(store, "s1", "transfer").await;
    assert_eq!(lease.fence, 1);
    assert_eq!(lease.owner, "a");
    assert_eq!(lease.expires_at, crate::time::to_utc(clock.now()) + LEASE);
    let again = store
        .create(new_saga("s1", "other"), "b", LEASE)
        .await
        .unwrap();
    let Created::Exists(summary) = again else {
        panic!("a second create must not create");
    };
    assert_eq!(
        summary.name, "transfer",
        "the first definition keeps the id"
    );
    assert_eq!(summary.state, State::Running);
    assert_eq!(summary.lease_owner.as_deref(), Some("a"));
    let log = store.load(&id("s1")).await.unwrap().unwrap();
    assert_eq!(log.input, json!({ "amount": 100, "saga": "s1" }));
    assert!(log.entries.is_empty());
    assert!(store.load(&id("nope")).await.unwrap().is_none());
}

use crate::WallClock as _;

async fn entries_keep_order_outputs_and_times(store: &dyn SagaStore, clock: &ManualClock) {
    let lease = create(store, "s1", "t").await;
    let t0 = crate::time::to_utc(clock.now());
    let lease = store.append(&lease, started("a"), LEASE).await.unwrap();
    clock.advance(SEC);
    let output = json!({ "reservation": "r-1", "nested": [1, 2, { "x": null }] });
    let lease = store
        .append(
            &lease,
            Entry::StepCompleted {
                step: "a".to_owned(),
                output: output.clone(),
            },
            LEASE,
        )
        .await
        .unwrap();
    assert_eq!(
        lease.expires_at,
        t0 + SEC + LEASE,
        "a write extends the lease"
    );
    let log = store.load(&id("s1")).await.unwrap().unwrap();
    assert_eq!(log.entries.len(), 2);
    assert_eq!(log.entries[0].seq, 1);
    assert_eq!(log.entries[1].seq, 2);
    assert_eq!(log.entries[0].at, t0);
    assert_eq!(log.entries[1].at, t0 + SEC);
    assert_eq!(log.entries[0].entry, started("a"));
    assert_eq!(
        log.entries[1].entry,
        Entry::StepCompleted {
            step: "a".to_owned(),
            output
        }
    );
    assert_eq!(log.summary.updated_at, t0 + SEC);
    assert_eq!(log.summary.lease_expires_at, Some(t0 + SEC + LEASE));
}

async fn states_follow_entries_and_final_entries_clear_the_lease(
    store: &dyn SagaStore,
    _clock: &ManualClock,
) {
    let lease = create(store, "s1", "t").await;
    let lease = store
        .append(
            &lease,
            Entry::Compensating {
                failed_step: "b".to_owned(),
                reason: "card declined".to_owned(),
            },
            LEASE,
        )
        .await
        .unwrap();
    let log = store.load(&id("s1")).await.unwrap().unwrap();
    assert_eq!(log.state(), State::Compensating);
    store
        .append(&lease, Entry::Compensated, LEASE)
        .await
        .unwrap();
    let log = store.load(&id("s1")).await.unwrap().unwrap();
    assert_eq!(log.state(), State::Compensated);
    assert_eq!(log.summary.lease_owner, None);
    assert_eq!(log.summary.lease_expires_at, None);
    let err = store.append(&lease, started("x"), LEASE).await.unwrap_err();
    assert!(
        matches!(err, Error::LeaseLost(_)),
        "a finished saga takes no more runner writes: {err:?}"
    );
    let err = store
        .append(
            &create(store, "s2", "t").await,
            Entry::Resolved {
                note: "n".to_owned(),
            },
            LEASE,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

async fn stale_fence_cannot_write(store: &dyn SagaStore, clock: &ManualClock) {
    let old = create(store, "s1", "t").await;
    assert!(
        store
            .claim("t", 1, "b", 10, LEASE)
            .await
            .unwrap()
            .is_empty(),
        "a live lease is not claimable"
    );
    clock.advance(LEASE);
    let claimed = store.claim("t", 1, "b", 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let new = claimed[0].clone();
    assert_eq!(new.fence, old.fence + 1);
    assert_eq!(new.owner, "b");
    for err in [
        store.append(&old, started("a"), LEASE).await.unwrap_err(),
        store.heartbeat(&old, LEASE).await.unwrap_err(),
        store.release(&old).await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::LeaseLost(_)), "{err:?}");
    }
    store.append(&new, started("a"), LEASE).await.unwrap();
    let log = store.load(&id("s1")).await.unwrap().unwrap();
    assert_eq!(log.entries.len(), 1, "the stale writes left no trace");
    assert_eq!(log.summary.fence, new.fence);
    assert_eq!(log.summary.lease_owner.as_deref(), Some("b"));
}

async fn claim_takes_expired_active_sagas_of_one_definition(
    store: &dyn SagaStore,
    clock: &ManualClock,
) {
    let done = create(store, "done", "t").await;
    store.append(&done, Entry::Completed, LEASE).await.unwrap();
    let parked = create(store, "parked", "t").await;
    store
        .append(
            &parked,
            Entry::Parked {
                reason: "r".to_owned(),
            },
            LEASE,
        )
        .await
        .unwrap();
    let back = create(store, "back", "t").await;
    store
        .append(
            &back,
            Entry::Compensating {
                failed_step: "x".to_owned(),
                reason: "r".to_owned(),
            },
            LEASE,
        )
        .await
        .unwrap();
    create(store, "fwd", "t").await;
    create(store, "other", "u").await;
    store
        .create(
            NewSaga {
                version: 2,
                ..new_saga("v2", "t")
            },
            "a",
            LEASE,
        )
        .await
        .unwrap();
    clock.advance(LEASE + SEC);
    let mut got: Vec<String> = store
        .claim("t", 1, "b", 10, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id.to_string())
        .collect();
    got.sort();
    assert_eq!(
        got,
        ["back", "fwd"],
        "running and compensating of t v1 only"
    );
    let v2 = store.claim("t", 2, "b", 10, LEASE).await.unwrap();
    assert_eq!(v2.len(), 1);
    assert_eq!(v2[0].id.as_str(), "v2");
}

async fn claim_respects_the_limit_and_heartbeat_extends(
    store: &dyn SagaStore,
    clock: &ManualClock,
) {
    for i in 0..5 {
        create(store, &format!("s{i}"), "t").await;
    }
    clock.advance(LEASE);
    let first = store.claim("t", 1, "b", 3, LEASE).await.unwrap();
    assert_eq!(first.len(), 3);
    let rest = store.claim("t", 1, "c", 3, LEASE).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert!(store.claim("t", 1, "d", 0, LEASE).await.unwrap().is_empty());
    clock.advance(LEASE - SEC);
    let lease = store.heartbeat(&first[0], LEASE).await.unwrap();
    assert_eq!(lease.expires_at, crate::time::to_utc(clock.now()) + LEASE);
    clock.advance(SEC);
    let again = store.claim("t", 1, "d", 10, LEASE).await.unwrap();
    assert_eq!(
        again.len(),
        4,
        "every lease lapsed but the one the heartbeat extended"
    );
    assert!(again.iter().all(|l| l.id != first[0].id));
}

async fn release_makes_claimable_at_once(store: &dyn SagaStore, _clock: &ManualClock) {
    let lease = create(store, "s1", "t").await;
    store.release(&lease).await.unwrap();
    let claimed = store.claim("t", 1, "b", 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].fence, 2);
    let log = store.load(&id("s1")).await.unwrap().unwrap();
    assert_eq!(log.summary.lease_owner.as_deref(), Some("b"));
}

async fn concurrent_claims_never_share_a_saga(store: &dyn SagaStore, clock: &ManualClock) {
    for i in 0..40 {
        create(store, &format!("s{i:02}"), "t").await;
    }
    clock.advance(LEASE);
    let claims = (0..8).map(|w| store.claim("t", 1, if w % 2 == 0 { "a" } else { "b" }, 7, LEASE));
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for batch in futures_join_all(claims).await {
        for lease in batch.unwrap() {
            total += 1;
            assert!(seen.insert(lease.id.clone()), "{} claimed twice", lease.id);
        }
    }
    assert_eq!(total, 40);
}

/// Polls every future concurrently (no `futures` dependency for one helper).
async fn futures_join_all<T>(futs: impl Iterator<Item = impl Future<Output = T>>) -> Vec<T> {
    let futs: Vec<_> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    let mut futs: Vec<_> = futs.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, fut) in out.iter_mut().zip(futs.iter_mut()) {
            if let Some(f) = fut {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *slot = Some(v);
                        *fut = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

async fn operator_entries_check_state(store: &dyn SagaStore, _clock: &ManualClock) {
    let lease = create(store, "s1", "t").await;
    let retry = Entry::Retried {
        resume: State::Compensating,
    };
    let err = store
        .operator_append(&id("s1"), retry.clone(), State::Failed)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongState {
                actual: State::Running,
                expected: State::Failed,
                ..
            }
        ),
        "{err:?}"
    );
    let err = store
        .operator_append(&id("none"), retry.clone(), State::Failed)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    let err = store
        .operator_append(&id("s1"), Entry::Completed, State::Running)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");

    store
        .append(
            &lease,
            Entry::Parked {
                reason: "refund refused".to_owned(),
            },
            LEASE,
        )
        .await
        .unwrap();
    let summary = store
        .operator_append(&id("s1"), retry, State::Failed)
        .await
        .unwrap();
    assert_eq!(summary.state, State::Compensating);
    assert!(
        summary.fence > lease.fence,
        "an operator retry fences the old runner out"
    );
    assert_eq!(summary.lease_expires_at, None);
    let err = store.append(&lease, started("x"), LEASE).await.unwrap_err();
    assert!(matches!(err, Error::LeaseLost(_)), "{err:?}");
    let claimed = store.claim("t", 1, "b", 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "sent back to work: claimable at once");
    store
        .append(
            &claimed[0],
            Entry::Parked {
                reason: "again".to_owned(),
            },
            LEASE,
        )
        .await
        .unwrap();
    let summary = store
        .operator_append(
            &id("s1"),
            Entry::Resolved {
                note: "refunded by hand".to_owned(),
            },
            State::Failed,
        )
        .await
        .unwrap();
    assert_eq!(summary.state, State::Resolved);
    let log = store.load(&id("s1")).await.unwrap().unwrap();
    assert_eq!(log.entries.len(), 4);
    assert!(matches!(log.entries[3].entry, Entry::Resolved { .. }));
}

async fn list_filters_by_state_and_name(store: &dyn SagaStore, clock: &ManualClock) {
    for (i, name) in [(0, "t"), (1, "t"), (2, "u")] {
        let lease = create(store, &format!("s{i}"), name).await;
        clock.advance(SEC);
        if i == 1 {
            store.append(&lease, Entry::Completed, LEASE).await.unwrap();
        }
    }
    let ids = |rows: Vec<crate::SagaSummary>| -> Vec<String> {
        rows.into_iter().map(|s| s.id.to_string()).collect()
    };
    let all = store.list(&ListFilter::default()).await.unwrap();
    assert_eq!(ids(all), ["s2", "s1", "s0"], "newest write first");
    let running = store
        .list(&ListFilter::state(State::Running))
        .await
        .unwrap();
    assert_eq!(ids(running), ["s2", "s0"]);
    let t_running = store
        .list(&ListFilter::state(State::Running).name("t"))
        .await
        .unwrap();
    assert_eq!(ids(t_running), ["s0"]);
    let one = store.list(&ListFilter::default().limit(1)).await.unwrap();
    assert_eq!(ids(one), ["s2"]);
}
