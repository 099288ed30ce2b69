//! The cases of [`QueueStore`](crate::QueueStore), the worker's contract: enqueue and dedup,
//! claim order, backoff, leases and fencing, snooze, horizons, groups, remembered keys.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::{
    Enqueued, Error, Filter, HORIZON_PASSED, LEASE_EXPIRED, ManualClock, Page, Retention, Snooze,
    State,
};

/// The horizon of queue "q" in the horizon case.
const HORIZON: Duration = Duration::from_secs(300);

/// Runs the cases of the worker's contract; `false` when `make` declined (skip the rest).
pub(super) async fn run<F, Fut, G>(make: &F) -> bool
where
    F: Fn(QueueConfig) -> Fut,
    Fut: Future<Output = Option<(Arc<dyn Queue>, G)>>,
{
    case!(make, dedup_on_enqueue);
    case!(make, batch_is_all_or_nothing);
    case!(make, invalid_input_is_a_typed_error);
    case!(make, ordering_by_priority_then_run_at);
    case!(make, backoff_schedule_is_respected);
    case!(make, dead_after_max_attempts_keeps_every_error);
    case!(make, trace_context_is_kept_through_retries_and_replay);
    case!(make, fatal_and_retry_after);
    case!(make, asked_delays_are_capped_by_the_policy);
    case!(make, lease_expiry_redelivers_and_fences_stale_writes);
    case!(make, extend_keeps_the_lease);
    case!(make, orphan_with_no_attempts_left_is_dead);
    case!(make, release_gives_back_without_counting);
    case!(make, ack_batch_skips_lost_leases);
    case!(make, wait_for_work_wakes_on_enqueue);
    case!(make, snooze_spends_no_attempt_and_is_recorded);
    case!(make, snooze_is_fenced_by_the_lease);
    case!(
        make,
        horizon_dead_letters_a_message_that_waited_too_long,
        |b| { b.queue_horizon("q", HORIZON) }
    );
    case!(make, groups_run_in_order_one_at_a_time);
    case!(make, a_retrying_head_blocks_only_its_group);
    case!(make, an_expired_head_is_rescued_before_its_group_moves);
    case!(make, done_keys_are_remembered_until_pruned, |b| b
        .remember_done("forgetful", false));
    case!(make, remember_done_can_be_narrowed_for_every_queue, |b| b
        .default_remember_done(false)
        .remember_done("q", true));
    true
}

fn grouped(n: u32, group: &str) -> NewMessage {
    msg("q", n).group(group)
}

async fn dedup_on_enqueue(s: &dyn Queue, _clock: &ManualClock) {
    let first = s.enqueue(msg("q", 1).dedup_key("wamid.A")).await.unwrap();
    assert!(matches!(first, Enqueued::New(_)));
    let again = s.enqueue(msg("q", 2).dedup_key("wamid.A")).await.unwrap();
    assert_eq!(again, Enqueued::Duplicate(first.id()));

    // Within one batch: the first copy is stored, later ones are its duplicates; keys are
    // per queue; messages without a key never collide.
    let out = s
        .enqueue_batch(vec![
            msg("q", 3).dedup_key("wamid.B"),
            msg("q", 4).dedup_key("wamid.B"),
            msg("q", 5).dedup_key("wamid.A"),
            msg("other", 6).dedup_key("wamid.A"),
            msg("q", 7),
            msg("q", 8),
        ])
        .await
        .unwrap();
    assert_eq!(out.len(), 6);
    assert!(!out[0].is_duplicate());
    assert_eq!(out[1], Enqueued::Duplicate(out[0].id()));
    assert_eq!(out[2], Enqueued::Duplicate(first.id()));
    assert!(!out[3].is_duplicate());
    assert_ne!(out[3].id(), first.id());
    assert!(!out[4].is_duplicate() && !out[5].is_duplicate());
    assert_ne!(out[4].id(), out[5].id());

    let stored = s.get(first.id()).await.unwrap().unwrap();
    assert_eq!(
        stored.payload,
        json!({ "n": 1 }),
        "a duplicate never overwrites"
    );

    // By default a done message keeps its key (the seed's `message_id UNIQUE`, Oban, River).
    let claimed = s.claim("q", 10, LEASE).await.unwrap();
    let a = claimed.iter().find(|c| c.message.id == first.id()).unwrap();
    s.ack(&a.lease).await.unwrap();
    let after_done = s.enqueue(msg("q", 9).dedup_key("wamid.A")).await.unwrap();
    assert_eq!(after_done, Enqueued::Duplicate(first.id()));
}

async fn batch_is_all_or_nothing(s: &dyn Queue, _clock: &ManualClock) {
    let err = s
        .enqueue_batch(vec![msg("q", 1), msg("q", 2).priority(10)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(s.stats().await.unwrap().is_empty(), "nothing was stored");
    assert!(s.enqueue_batch(vec![]).await.unwrap().is_empty());
}

async fn invalid_input_is_a_typed_error(s: &dyn Queue, _clock: &ManualClock) {
    for bad in [
        msg("", 1),
        msg("q", 1).priority(10),
        msg("q", 1).dedup_key(""),
        msg("q", 1).dedup_key("x".repeat(256)),
        msg("q", 1).max_attempts(0),
        msg("q\n", 1),
    ] {
        let err = s.enqueue(bad.clone()).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{bad:?}: {err}");
    }
    let err = s.claim("q", 1, Duration::ZERO).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)));
    assert!(s.claim("q", 0, LEASE).await.unwrap().is_empty());
}

async fn ordering_by_priority_then_run_at(s: &dyn Queue, clock: &ManualClock) {
    let low = s.enqueue(msg("q", 1).priority(9)).await.unwrap().id();
    clock.advance(SEC);
    let mid_late = s.enqueue(msg("q", 2).priority(5)).await.unwrap().id();
    let urgent = s.enqueue(msg("q", 3).priority(0)).await.unwrap().id();
    let mid_early = s
        .enqueue(msg("q", 4).priority(5).delay(Duration::ZERO))
        .await
        .unwrap()
        .id();
    // Same priority: the earlier run_at wins, whatever the enqueue order.
    let s_mid_early = s.get(mid_early).await.unwrap().unwrap();
    let s_mid_late = s.get(mid_late).await.unwrap().unwrap();
    assert_eq!(s_mid_early.run_at, s_mid_late.run_at);
    let later = s
        .enqueue(msg("q", 5).priority(0).delay(Duration::from_secs(10)))
        .await
        .unwrap()
        .id();

    let first = s.claim("q", 2, LEASE).await.unwrap();
    let ids: Vec<_> = first.iter().map(|c| c.message.id).collect();
    assert_eq!(
        ids,
        vec![urgent, mid_late],
        "priority first, then run_at, then id"
    );
    let rest = s.claim("q", 10, LEASE).await.unwrap();
    let ids: Vec<_> = rest.iter().map(|c| c.message.id).collect();
    assert_eq!(
        ids,
        vec![mid_early, low],
        "the delayed message is not due yet"
    );

    clock.advance(Duration::from_secs(10));
    let due = s.claim("q", 10, LEASE).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].message.id, later);
    assert_eq!(due[0].message.state, State::Running);
    assert_eq!(due[0].message.attempts, 1);
    assert_eq!(due[0].lease.attempt, 1);
    assert_eq!(due[0].lease.expires_at, start() + Duration::from_secs(41));
    assert!(s.claim("other", 10, LEASE).await.unwrap().is_empty());
}

async fn backoff_schedule_is_respected(s: &dyn Queue, clock: &ManualClock) {
    let id = s.enqueue(msg("q", 1)).await.unwrap().id();
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    let state = s
        .fail(&c.lease, Failure::retryable("timeout", "first"))
        .await
        .unwrap();
    assert_eq!(state, State::Retrying);
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!(m.run_at, start() + policy().delay(1));
    assert_eq!(m.lease_owner, None);

    clock.advance(Duration::from_millis(999));
    assert!(
        s.claim("q", 1, LEASE).await.unwrap().is_empty(),
        "not before the backoff"
    );
    clock.advance(Duration::from_millis(1));
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(c.lease.attempt, 2);
    s.fail(&c.lease, Failure::retryable("timeout", "second"))
        .await
        .unwrap();
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!(m.run_at, start() + SEC + policy().delay(2));
    assert_eq!(policy().delay(2), Duration::from_secs(2));
    clock.advance(Duration::from_millis(1999));
    assert!(s.claim("q", 1, LEASE).await.unwrap().is_empty());
    clock.advance(Duration::from_millis(1));
    assert_eq!(s.claim("q", 1, LEASE).await.unwrap().len(), 1);
}

async fn dead_after_max_attempts_keeps_every_error(s: &dyn Queue, clock: &ManualClock) {
    let id = s.enqueue(msg("q", 1)).await.unwrap().id();
    let mut states = Vec::new();
    for attempt in 1..=3u32 {
        let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
        assert_eq!(c.lease.attempt, attempt);
        states.push(
            s.fail(
                &c.lease,
                Failure::retryable(format!("kind{attempt}"), format!("boom {attempt}")),
            )
            .await
            .unwrap(),
        );
        clock.advance(Duration::from_secs(60));
    }
    assert_eq!(states, vec![State::Retrying, State::Retrying, State::Dead]);
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!(m.state, State::Dead);
    assert_eq!(m.attempts, 3);
    let history: Vec<_> = m
        .errors
        .iter()
        .map(|e| (e.attempt, e.kind.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        history,
        vec![
            (1, "kind1", "boom 1"),
            (2, "kind2", "boom 2"),
            (3, "kind3", "boom 3")
        ]
    );
    assert_eq!(m.errors[1].at, start() + Duration::from_secs(60));
    assert!(
        s.claim("q", 1, LEASE).await.unwrap().is_empty(),
        "dead is never claimed"
    );

    // A message's own max_attempts overrides the policy's.
    let one = s.enqueue(msg("q", 2).max_attempts(1)).await.unwrap().id();
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(c.message.id, one);
    assert_eq!(c.lease.max_attempts, 1);
    let state = s
        .fail(&c.lease, Failure::retryable("x", "y"))
        .await
        .unwrap();
    assert_eq!(state, State::Dead);
}

async fn trace_context_is_kept_through_retries_and_replay(s: &dyn Queue, clock: &ManualClock) {
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let id = s
        .enqueue(msg("q", 1).trace_context(traceparent))
        .await
        .unwrap()
        .id();
    for attempt in 1..=3u32 {
        let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
        assert_eq!(c.message.id, id);
        assert_eq!(
            c.message.trace_context.as_deref(),
            Some(traceparent),
            "attempt {attempt} gets the producer's context"
        );
        s.fail(&c.lease, Failure::retryable("x", "y"))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(60));
    }
    let dead = s.get(id).await.unwrap().unwrap();
    assert_eq!(dead.state, State::Dead);
    assert_eq!(dead.trace_context.as_deref(), Some(traceparent));
    let listed = s.list(&Filter::dead(), Page::first(10)).await.unwrap();
    assert_eq!(listed[0].trace_context.as_deref(), Some(traceparent));

    s.replay(id).await.unwrap();
    let replayed = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(replayed.message.id, id);
    assert_eq!(replayed.message.trace_context.as_deref(), Some(traceparent));

    // Batches carry it per message; a message without one has none.
    let batch = s
        .enqueue_batch(vec![msg("q", 2).trace_context("00-one-01"), msg("q", 3)])
        .await
        .unwrap();
    let again = s.claim("q", 2, LEASE).await.unwrap();
    let contexts: Vec<Option<&str>> = batch
        .iter()
        .map(|e| {
            again
                .iter()
                .find(|c| c.message.id == e.id())
                .map(|c| c.message.trace_context.as_deref())
                .unwrap()
        })
        .collect();
    assert_eq!(contexts, vec![Some("00-one-01"), None]);

    // Longer than the bound: a typed error, nothing stored.
    let long = "x".repeat(crate::MAX_TRACE_CONTEXT_LEN + 1);
    assert!(matches!(
        s.enqueue(msg("q", 4).trace_context(long)).await,
        Err(Error::InvalidInput(_))
    ));
    let fits = "x".repeat(crate::MAX_TRACE_CONTEXT_LEN);
    let kept = s
        .enqueue(msg("q", 5).trace_context(fits.clone()))
        .await
        .unwrap()
        .id();
    assert_eq!(
        s.get(kept).await.unwrap().unwrap().trace_context,
        Some(fits)
    );
}

async fn fatal_and_retry_after(s: &dyn Queue, _clock: &ManualClock) {
    let fatal = s.enqueue(msg("q", 1).priority(0)).await.unwrap().id();
    let later = s.enqueue(msg("q", 2).priority(1)).await.unwrap().id();
    let claimed = s.claim("q", 2, LEASE).await.unwrap();
    assert_eq!(claimed[0].message.id, fatal);
    let state = s
        .fail(&claimed[0].lease, Failure::fatal("bad_payload", "no text"))
        .await
        .unwrap();
    assert_eq!(state, State::Dead, "a non-retryable error is dead at once");
    let m = s.get(fatal).await.unwrap().unwrap();
    assert_eq!(m.attempts, 1);
    assert_eq!(m.errors.len(), 1);

    let state = s
        .fail(
            &claimed[1].lease,
            Failure::retryable("http_429", "slow down").after(Duration::from_secs(45)),
        )
        .await
        .unwrap();
    assert_eq!(state, State::Retrying);
    let m = s.get(later).await.unwrap().unwrap();
    assert_eq!(
        m.run_at,
        start() + Duration::from_secs(45),
        "the failure's delay wins"
    );
}

async fn asked_delays_are_capped_by_the_policy(s: &dyn Queue, clock: &ManualClock) {
    // A `Retry-After: 999999999999` must not park a message for millennia: every delay a
    // caller asks for is capped at the policy's max delay (60 s here).
    let failed = s.enqueue(msg("q", 1)).await.unwrap().id();
    let snoozed = s.enqueue(msg("q", 2)).await.unwrap().id();
    let until = s.enqueue(msg("q", 3)).await.unwrap().id();
    let claimed = s.claim("q", 3, LEASE).await.unwrap();
    let huge = Duration::from_secs(999_999_999_999);
    s.fail(
        &claimed[0].lease,
        Failure::retryable("http_503", "Retry-After: 999999999999").after(huge),
    )
    .await
    .unwrap();
    s.snooze(
        &claimed[1].lease,
        Snooze::after("breaker_open", "open", huge),
    )
    .await
    .unwrap();
    s.snooze(
        &claimed[2].lease,
        Snooze::until(
            "breaker_open",
            "open",
            start() + Duration::from_secs(10 * 365 * 86_400),
        ),
    )
    .await
    .unwrap();
    for id in [failed, snoozed, until] {
        let m = s.get(id).await.unwrap().unwrap();
        assert_eq!(m.run_at, start() + Duration::from_secs(60), "{id}");
    }
    clock.advance(Duration::from_secs(60));
    assert_eq!(s.claim("q", 10, LEASE).await.unwrap().len(), 3);
}

async fn lease_expiry_redelivers_and_fences_stale_writes(s: &dyn Queue, clock: &ManualClock) {
    let id = s.enqueue(msg("q", 1)).await.unwrap().id();
    let stale = s
        .claim("q", 1, Duration::from_secs(10))
        .await
        .unwrap()
        .remove(0);
    assert!(s.claim("q", 1, LEASE).await.unwrap().is_empty(), "leased");
    // The worker "dies": no ack. After the lease, another worker gets the message.
    clock.advance(Duration::from_secs(10));
    let fresh = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(fresh.message.id, id);
    assert_eq!(fresh.lease.attempt, 2);
    assert_ne!(fresh.lease.token, stale.lease.token);
    assert_eq!(fresh.message.errors.len(), 1);
    assert_eq!(fresh.message.errors[0].kind, LEASE_EXPIRED);
    assert_eq!(fresh.message.errors[0].attempt, 1);

    // The stale holder can no longer settle it.
    assert!(matches!(s.ack(&stale.lease).await, Err(Error::LeaseLost(x)) if x == id));
    assert!(matches!(
        s.fail(&stale.lease, Failure::retryable("x", "y")).await,
        Err(Error::LeaseLost(_))
    ));
    assert!(matches!(
        s.extend(&stale.lease, LEASE).await,
        Err(Error::LeaseLost(_))
    ));
    assert!(matches!(
        s.release(&stale.lease).await,
        Err(Error::LeaseLost(_))
    ));
    assert_eq!(
        s.ack_batch(std::slice::from_ref(&stale.lease))
            .await
            .unwrap(),
        0
    );

    s.ack(&fresh.lease).await.unwrap();
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!(m.state, State::Done);
    // Settled: the lease is spent.
    assert!(matches!(
        s.ack(&fresh.lease).await,
        Err(Error::LeaseLost(_))
    ));
}

async fn extend_keeps_the_lease(s: &dyn Queue, clock: &ManualClock) {
    s.enqueue(msg("q", 1)).await.unwrap();
    let c = s
        .claim("q", 1, Duration::from_secs(10))
        .await
        .unwrap()
        .remove(0);
    clock.advance(Duration::from_secs(8));
    let extended = s.extend(&c.lease, Duration::from_secs(10)).await.unwrap();
    assert_eq!(extended.expires_at, start() + Duration::from_secs(18));
    assert_eq!(extended.token, c.lease.token);
    clock.advance(Duration::from_secs(8));
    assert!(
        s.claim("q", 1, LEASE).await.unwrap().is_empty(),
        "still leased at +16 s"
    );
    s.ack(&extended).await.unwrap();
}

async fn orphan_with_no_attempts_left_is_dead(s: &dyn Queue, clock: &ManualClock) {
    let id = s.enqueue(msg("q", 1).max_attempts(1)).await.unwrap().id();
    s.claim("q", 1, Duration::from_secs(5)).await.unwrap();
    clock.advance(Duration::from_secs(5));
    assert!(s.claim("q", 1, LEASE).await.unwrap().is_empty());
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!(m.state, State::Dead);
    assert_eq!(m.errors.len(), 1);
    assert_eq!(m.errors[0].kind, LEASE_EXPIRED);
}

async fn release_gives_back_without_counting(s: &dyn Queue, _clock: &ManualClock) {
    let id = s.enqueue(msg("q", 1)).await.unwrap().id();
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    s.release(&c.lease).await.unwrap();
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!((m.state, m.attempts), (State::Pending, 0));
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(c.lease.attempt, 1);
    s.fail(&c.lease, Failure::retryable("x", "y").after(Duration::ZERO))
        .await
        .unwrap();
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    s.release(&c.lease).await.unwrap();
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!((m.state, m.attempts), (State::Retrying, 1));
}

async fn ack_batch_skips_lost_leases(s: &dyn Queue, clock: &ManualClock) {
    for n in 0..5 {
        s.enqueue(msg("q", n)).await.unwrap();
    }
    let mut claimed = s.claim("q", 5, Duration::from_secs(5)).await.unwrap();
    assert_eq!(claimed.len(), 5);
    clock.advance(Duration::from_secs(5));
    // One lease expired and was re-claimed by someone else: its old lease is skipped.
    let thief = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    let leases: Vec<_> = claimed.drain(..).map(|c| c.lease).collect();
    assert_eq!(s.ack_batch(&leases).await.unwrap(), 4);
    let stats = s.stats().await.unwrap();
    assert_eq!(stats[0].count(State::Done), 4);
    assert_eq!(stats[0].count(State::Running), 1);
    assert_eq!(s.ack_batch(&[thief.lease]).await.unwrap(), 1);
    assert_eq!(s.ack_batch(&[]).await.unwrap(), 0);
}

async fn wait_for_work_wakes_on_enqueue(s: &dyn Queue, _clock: &ManualClock) {
    // The wait's own timeout is an hour; finishing at all proves the wake-up (the bound below
    // only keeps a broken wake-up from hanging the suite).
    let waiting = s.wait_for_work("q", Duration::from_secs(3600));
    let enqueue = async {
        // Let the waiter subscribe first (Postgres LISTEN is asynchronous).
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.enqueue(msg("q", 1)).await.unwrap();
        }
    };
    let woke = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            () = waiting => true,
            () = enqueue => false,
        }
    })
    .await;
    assert!(
        matches!(woke, Ok(true)),
        "an enqueue must wake a waiting worker"
    );
}

async fn snooze_spends_no_attempt_and_is_recorded(s: &dyn Queue, clock: &ManualClock) {
    let id = s.enqueue(msg("q", 1)).await.unwrap().id();
    // Snoozed on its first claim: the attempt is given back, it is pending again.
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(c.lease.attempt, 1);
    let state = s
        .snooze(
            &c.lease,
            Snooze::after("breaker_open", "downstream open", 10 * SEC),
        )
        .await
        .unwrap();
    assert_eq!(state, State::Pending);
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!((m.state, m.attempts), (State::Pending, 0));
    assert_eq!(m.run_at, start() + 10 * SEC);
    assert_eq!(m.waiting_since, Some(start()));
    assert_eq!(m.lease_owner, None);
    assert_eq!(m.errors.len(), 1);
    assert!(m.errors[0].snoozed);
    assert_eq!(
        (m.errors[0].kind.as_str(), m.errors[0].attempt),
        ("breaker_open", 1)
    );
    assert!(
        s.claim("q", 1, LEASE).await.unwrap().is_empty(),
        "not yet due"
    );

    // Many snoozes never use up the attempts: a real failure after them is attempt 1.
    for _ in 0..5 {
        clock.advance(10 * SEC);
        let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
        assert_eq!(c.lease.attempt, 1);
        s.snooze(&c.lease, Snooze::after("breaker_open", "open", 10 * SEC))
            .await
            .unwrap();
    }
    clock.advance(10 * SEC);
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(c.lease.attempt, 1);
    let state = s
        .fail(&c.lease, Failure::retryable("timeout", "real failure"))
        .await
        .unwrap();
    assert_eq!(state, State::Retrying);
    // A snooze after a real attempt keeps that attempt, and the message `retrying`.
    clock.advance(10 * SEC);
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(c.lease.attempt, 2);
    let state = s
        .snooze(&c.lease, Snooze::until("breaker_open", "open", start()))
        .await
        .unwrap();
    assert_eq!(state, State::Retrying, "a due time in the past is now");
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!((m.attempts, m.run_at), (1, start() + 70 * SEC));
    assert_eq!(
        m.waiting_since,
        Some(start()),
        "counted from the first snooze"
    );
    let kinds: Vec<_> = m
        .errors
        .iter()
        .map(|e| (e.kind.as_str(), e.snoozed))
        .collect();
    assert_eq!(kinds.len(), 8);
    assert_eq!(kinds[6], ("timeout", false));
    assert_eq!(kinds[7], ("breaker_open", true));

    // max_attempts still counts real attempts: two more failures and it is dead.
    for expected in [State::Retrying, State::Dead] {
        clock.advance(60 * SEC);
        let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
        let state = s
            .fail(&c.lease, Failure::retryable("timeout", "again"))
            .await
            .unwrap();
        assert_eq!(state, expected);
    }
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!((m.state, m.attempts), (State::Dead, 3));

    // An ack clears the waiting time.
    let other = s.enqueue(msg("q", 2)).await.unwrap().id();
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    s.snooze(
        &c.lease,
        Snooze::after("breaker_open", "open", Duration::ZERO),
    )
    .await
    .unwrap();
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(c.message.id, other);
    assert_eq!(
        c.lease.waiting_since,
        Some(c.message.waiting_since.unwrap())
    );
    s.ack(&c.lease).await.unwrap();
    let m = s.get(other).await.unwrap().unwrap();
    assert_eq!((m.state, m.waiting_since), (State::Done, None));
}

async fn snooze_is_fenced_by_the_lease(s: &dyn Queue, clock: &ManualClock) {
    let id = s.enqueue(msg("q", 1)).await.unwrap().id();
    let stale = s.claim("q", 1, 10 * SEC).await.unwrap().remove(0);
    clock.advance(10 * SEC);
    let fresh = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    assert!(matches!(
        s.snooze(&stale.lease, Snooze::after("breaker_open", "open", SEC)).await,
        Err(Error::LeaseLost(x)) if x == id
    ));
    let m = s.get(id).await.unwrap().unwrap();
    assert_eq!((m.state, m.attempts), (State::Running, 2), "untouched");
    s.ack(&fresh.lease).await.unwrap();
    assert!(matches!(
        s.snooze(&fresh.lease, Snooze::after("breaker_open", "open", SEC))
            .await,
        Err(Error::LeaseLost(_))
    ));
}

async fn horizon_dead_letters_a_message_that_waited_too_long(s: &dyn Queue, clock: &ManualClock) {
    let snoozing = s.enqueue(msg("q", 1)).await.unwrap().id();
    let failing = s.enqueue(msg("q", 2).max_attempts(100)).await.unwrap().id();
    let fatal = s.enqueue(msg("q", 3)).await.unwrap().id();
    let unbounded = s.enqueue(msg("other", 4)).await.unwrap().id();
    let mut claimed = s.claim("q", 3, LEASE).await.unwrap();
    claimed.extend(s.claim("other", 1, LEASE).await.unwrap());
    let lease_of = |id| {
        claimed
            .iter()
            .find(|c| c.message.id == id)
            .unwrap()
            .lease
            .clone()
    };
    // A non-retryable failure is dead at once, horizon or not, with no horizon entry.
    assert_eq!(
        s.fail(&lease_of(fatal), Failure::fatal("http_400", "bad"))
            .await
            .unwrap(),
        State::Dead
    );
    assert_eq!(s.get(fatal).await.unwrap().unwrap().errors.len(), 1);
    let snooze = || Snooze::after("breaker_open", "open", 60 * SEC);
    let fail = || Failure::retryable("timeout", "slow").after(60 * SEC);
    s.snooze(&lease_of(snoozing), snooze()).await.unwrap();
    s.fail(&lease_of(failing), fail()).await.unwrap();
    s.snooze(&lease_of(unbounded), snooze()).await.unwrap();

    // Up to the horizon they keep waiting; the first settle past it makes them dead.
    let mut states = Vec::new();
    loop {
        clock.advance(60 * SEC);
        let mut round = Vec::new();
        for c in s.claim("q", 10, LEASE).await.unwrap() {
            let state = if c.message.id == snoozing {
                s.snooze(&c.lease, snooze()).await.unwrap()
            } else {
                s.fail(&c.lease, fail()).await.unwrap()
            };
            round.push(state);
        }
        for c in s.claim("other", 10, LEASE).await.unwrap() {
            assert_eq!(
                s.snooze(&c.lease, snooze()).await.unwrap(),
                State::Pending,
                "no horizon on other queues"
            );
        }
        let done = round.iter().all(|st| *st == State::Dead);
        states.push(round);
        if done || states.len() > 10 {
            break;
        }
    }
    // Waiting since start(): settles at +60..+300 are within (not longer than) the horizon,
    // the one at +360 is past it.
    assert_eq!(states.len(), 6, "{states:?}");
    for id in [snoozing, failing] {
        let m = s.get(id).await.unwrap().unwrap();
        assert_eq!(m.state, State::Dead);
        assert_eq!(m.waiting_since, Some(start()));
        let last = m.last_error().unwrap();
        assert_eq!(last.kind, HORIZON_PASSED);
        assert_eq!(last.at, start() + 6 * 60 * SEC);
        assert_eq!(m.errors.len(), 8, "every wait kept, then the horizon entry");
    }
    let m = s.get(snoozing).await.unwrap().unwrap();
    assert_eq!(m.attempts, 0, "snoozes spent no attempt, even the last");
    assert_eq!(s.get(failing).await.unwrap().unwrap().attempts, 7);
    assert_eq!(
        s.get(unbounded).await.unwrap().unwrap().state,
        State::Pending
    );

    // A replay restarts the horizon.
    s.replay(snoozing).await.unwrap();
    let m = s.get(snoozing).await.unwrap().unwrap();
    assert_eq!(m.waiting_since, None);
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(s.snooze(&c.lease, snooze()).await.unwrap(), State::Pending);
    let m = s.get(snoozing).await.unwrap().unwrap();
    assert_eq!(m.waiting_since, Some(start() + 6 * 60 * SEC));
}

async fn groups_run_in_order_one_at_a_time(s: &dyn Queue, clock: &ManualClock) {
    let mut a = Vec::new();
    for n in 0..3 {
        a.push(s.enqueue(grouped(n, "alice")).await.unwrap().id());
        clock.advance(SEC);
    }
    let b = s.enqueue(grouped(10, "bob")).await.unwrap().id();
    let free = s.enqueue(msg("q", 20)).await.unwrap().id();
    // A later, more urgent message of a group still waits for the group's head.
    let urgent = s
        .enqueue(grouped(3, "alice").priority(0))
        .await
        .unwrap()
        .id();
    assert_eq!(
        s.get(a[0]).await.unwrap().unwrap().group_key.as_deref(),
        Some("alice")
    );

    // One claim of 10 takes one message per group, and every ungrouped one.
    let first = s.claim("q", 10, LEASE).await.unwrap();
    let ids: Vec<_> = first.iter().map(|c| c.message.id).collect();
    assert_eq!(ids, vec![a[0], b, free]);
    assert!(
        s.claim("q", 10, LEASE).await.unwrap().is_empty(),
        "heads are running"
    );

    // Alice's messages follow one by one, in enqueue order, each after the previous settles.
    s.ack(&first[0].lease).await.unwrap();
    let next = s.claim("q", 10, LEASE).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].message.id, a[1]);
    // A dead head no longer holds its group back.
    s.fail(&next[0].lease, Failure::fatal("bad", "bad"))
        .await
        .unwrap();
    let next = s.claim("q", 10, LEASE).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].message.id, a[2]);
    s.ack(&next[0].lease).await.unwrap();
    let next = s.claim("q", 10, LEASE).await.unwrap();
    assert_eq!(next[0].message.id, urgent);
}

async fn a_retrying_head_blocks_only_its_group(s: &dyn Queue, clock: &ManualClock) {
    let a1 = s.enqueue(grouped(1, "alice")).await.unwrap().id();
    let a2 = s.enqueue(grouped(2, "alice")).await.unwrap().id();
    let b: Vec<_> = {
        let mut v = Vec::new();
        for n in 0..3 {
            v.push(s.enqueue(grouped(10 + n, "bob")).await.unwrap().id());
        }
        v
    };
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    assert_eq!(c.message.id, a1);
    s.fail(&c.lease, Failure::retryable("timeout", "x").after(30 * SEC))
        .await
        .unwrap();
    // Alice's head is retrying: Bob's messages flow (in order), Alice's second waits.
    for &id in &b {
        let got = s.claim("q", 10, LEASE).await.unwrap();
        assert_eq!(got.len(), 1, "only Bob's head");
        assert_eq!(got[0].message.id, id);
        s.ack(&got[0].lease).await.unwrap();
    }
    assert!(s.claim("q", 10, LEASE).await.unwrap().is_empty());
    // A snoozed head blocks the same way.
    clock.advance(30 * SEC);
    let c = s.claim("q", 10, LEASE).await.unwrap().remove(0);
    assert_eq!(c.message.id, a1);
    s.snooze(&c.lease, Snooze::after("breaker_open", "open", 30 * SEC))
        .await
        .unwrap();
    assert!(s.claim("q", 10, LEASE).await.unwrap().is_empty());
    clock.advance(30 * SEC);
    let c = s.claim("q", 10, LEASE).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].message.id, a1);
    s.ack(&c[0].lease).await.unwrap();
    assert_eq!(s.claim("q", 10, LEASE).await.unwrap()[0].message.id, a2);
}

async fn an_expired_head_is_rescued_before_its_group_moves(s: &dyn Queue, clock: &ManualClock) {
    let a1 = s.enqueue(grouped(1, "alice")).await.unwrap().id();
    let a2 = s.enqueue(grouped(2, "alice")).await.unwrap().id();
    s.claim("q", 10, 10 * SEC).await.unwrap();
    clock.advance(10 * SEC);
    // The worker died: its head comes back first, not the next message.
    let got = s.claim("q", 10, LEASE).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].message.id, got[0].lease.attempt), (a1, 2));
    s.ack(&got[0].lease).await.unwrap();
    let got = s.claim("q", 10, LEASE).await.unwrap();
    assert_eq!(got[0].message.id, a2);

    // A head that dies on its last attempt is buried, then its group moves on.
    let a3 = s
        .enqueue(grouped(3, "alice").max_attempts(1))
        .await
        .unwrap()
        .id();
    let a4 = s.enqueue(grouped(4, "alice")).await.unwrap().id();
    s.ack(&got[0].lease).await.unwrap();
    s.claim("q", 10, 10 * SEC).await.unwrap();
    clock.advance(10 * SEC);
    let mut got = s.claim("q", 10, LEASE).await.unwrap();
    if got.is_empty() {
        // Buried by that claim; the group moves at the next.
        got = s.claim("q", 10, LEASE).await.unwrap();
    }
    assert_eq!(s.get(a3).await.unwrap().unwrap().state, State::Dead);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.id, a4);
}

async fn done_keys_are_remembered_until_pruned(s: &dyn Queue, clock: &ManualClock) {
    let first = s
        .enqueue(msg("q", 1).dedup_key("wamid.A"))
        .await
        .unwrap()
        .id();
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    s.ack(&c.lease).await.unwrap();
    // Queue "q" remembers done keys (the default): the redelivery is a duplicate of the done
    // message.
    assert_eq!(
        s.enqueue(msg("q", 2).dedup_key("wamid.A")).await.unwrap(),
        Enqueued::Duplicate(first)
    );
    let out = s
        .enqueue_batch(vec![
            msg("q", 3).dedup_key("wamid.A"),
            msg("q", 4).dedup_key("wamid.B"),
            msg("q", 5).dedup_key("wamid.B"),
        ])
        .await
        .unwrap();
    assert_eq!(out[0], Enqueued::Duplicate(first));
    assert!(!out[1].is_duplicate());
    assert_eq!(out[2], Enqueued::Duplicate(out[1].id()));
    // A queue told to forget: a done key is free again, a live one is still held.
    let held = s
        .enqueue(msg("forgetful", 1).dedup_key("wamid.A"))
        .await
        .unwrap()
        .id();
    assert_eq!(
        s.enqueue(msg("forgetful", 2).dedup_key("wamid.A"))
            .await
            .unwrap(),
        Enqueued::Duplicate(held)
    );
    let c = s.claim("forgetful", 1, LEASE).await.unwrap().remove(0);
    s.ack(&c.lease).await.unwrap();
    assert!(
        !s.enqueue(msg("forgetful", 3).dedup_key("wamid.A"))
            .await
            .unwrap()
            .is_duplicate()
    );
    // Pruned done messages are forgotten.
    clock.advance(SEC);
    s.prune(&Retention {
        done: Duration::ZERO,
        dead: None,
    })
    .await
    .unwrap();
    assert!(s.get(first).await.unwrap().is_none());
    assert!(
        !s.enqueue(msg("q", 6).dedup_key("wamid.A"))
            .await
            .unwrap()
            .is_duplicate()
    );

    // The race: the holder is settled done while enqueues of its key run. Every enqueue is a
    // duplicate of the holder (live or done), none is new, none fails.
    for round in 0..20 {
        let key = format!("race.{round}");
        let holder = s.enqueue(msg("q", 7).dedup_key(&key)).await.unwrap().id();
        let c = s
            .claim("q", 10, LEASE)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.message.id == holder)
            .unwrap();
        let enqueues = async {
            let mut out = Vec::new();
            for _ in 0..5 {
                out.push(s.enqueue(msg("q", 8).dedup_key(&key)).await);
                tokio::task::yield_now().await;
            }
            out
        };
        let (acked, results) = tokio::join!(s.ack(&c.lease), enqueues);
        acked.unwrap();
        for r in results {
            assert_eq!(r.unwrap(), Enqueued::Duplicate(holder), "round {round}");
        }
        let live = s
            .list(&Filter::in_state(State::Pending), Page::first(1000))
            .await
            .unwrap();
        assert!(live.iter().all(|m| m.dedup_key.as_deref() != Some(&*key)));
    }
}

async fn remember_done_can_be_narrowed_for_every_queue(s: &dyn Queue, _clock: &ManualClock) {
    // default_remember_done(false), remember_done("q", true): only "q" keeps done keys.
    for (queue, remembered) in [("q", true), ("other", false)] {
        let first = s
            .enqueue(msg(queue, 1).dedup_key("wamid.A"))
            .await
            .unwrap()
            .id();
        let c = s.claim(queue, 1, LEASE).await.unwrap().remove(0);
        s.ack(&c.lease).await.unwrap();
        let again = s.enqueue(msg(queue, 2).dedup_key("wamid.A")).await.unwrap();
        assert_eq!(again == Enqueued::Duplicate(first), remembered, "{queue}");
        assert_eq!(again.is_duplicate(), remembered, "{queue}");
    }
}
