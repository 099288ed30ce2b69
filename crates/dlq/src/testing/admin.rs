//! The cases of [`QueueAdmin`](crate::QueueAdmin), the operator's contract: list, replay, run
//! now, delete, purge, prune, stats.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::{
    AlertLevel, AlertThresholds, Enqueued, Error, Filter, ManualClock, Page, Retention, State,
};

/// Runs the cases of the operator's contract; `false` when `make` declined (skip the rest).
pub(super) async fn run<F, Fut, G>(make: &F) -> bool
where
    F: Fn(QueueConfig) -> Fut,
    Fut: Future<Output = Option<(Arc<dyn Queue>, G)>>,
{
    case!(make, replay_one_and_bulk);
    case!(make, replay_and_run_now_take_retrying_messages);
    case!(make, list_filters_and_pages);
    case!(make, delete_and_purge);
    case!(make, retention_prunes_done_and_old_dead);
    case!(make, stats_by_queue);
    true
}

async fn replay_one_and_bulk(s: &dyn Queue, _clock: &ManualClock) {
    let a = kill(s, "q", "timeout", Some("k1")).await;
    let b = kill(s, "q", "http_500", None).await;
    let c = kill(s, "other", "timeout", None).await;

    s.replay(a).await.unwrap();
    let m = s.get(a).await.unwrap().unwrap();
    assert_eq!((m.state, m.attempts), (State::Pending, 0));
    assert_eq!(m.errors.len(), 1, "history is kept across a replay");
    // The replayed message still holds its key.
    let dup = s.enqueue(msg("q", 1).dedup_key("k1")).await.unwrap();
    assert_eq!(dup, Enqueued::Duplicate(a));

    assert!(matches!(
        s.replay(a).await,
        Err(Error::WrongState {
            actual: State::Pending,
            expected: State::Dead,
            ..
        })
    ));
    let missing = crate::MessageId::new();
    assert!(matches!(s.replay(missing).await, Err(Error::NotFound(x)) if x == missing));

    // Bulk, by filter: only the timeouts of queue "other"... then everything left.
    assert_eq!(
        s.replay_matching(&Filter::dead().error_kind("timeout"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.get(c).await.unwrap().unwrap().state, State::Pending);
    assert_eq!(s.get(b).await.unwrap().unwrap().state, State::Dead);
    assert!(matches!(
        s.replay_matching(&Filter::in_state(State::Done)).await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(
        s.replay_matching(&Filter::dead().queue("q")).await.unwrap(),
        1
    );
    let again = s.claim("q", 10, LEASE).await.unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|c| c.lease.attempt == 1));
}

async fn list_filters_and_pages(s: &dyn Queue, clock: &ManualClock) {
    let a = kill(s, "q", "timeout", None).await;
    clock.advance(Duration::from_secs(100));
    let b = kill(s, "q", "http_500", None).await;
    clock.advance(Duration::from_secs(100));
    let c = kill(s, "q", "timeout", None).await;
    let d = kill(s, "other", "timeout", None).await;
    s.enqueue(msg("q", 9)).await.unwrap();

    let ids = |v: Vec<crate::Message>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let all = s.list(&Filter::dead(), Page::default()).await.unwrap();
    assert_eq!(ids(all.clone()), vec![a, b, c, d]);
    let m = &all[0];
    assert_eq!(m.last_error().unwrap().kind, "timeout");
    assert_eq!(
        ids(s
            .list(&Filter::dead().queue("q"), Page::default())
            .await
            .unwrap()),
        vec![a, b, c]
    );
    assert_eq!(
        ids(s
            .list(&Filter::dead().error_kind("timeout"), Page::default())
            .await
            .unwrap()),
        vec![a, c, d]
    );
    let window = Filter::dead().between(
        start() + Duration::from_secs(50),
        start() + Duration::from_secs(150),
    );
    assert_eq!(
        ids(s.list(&window, Page::default()).await.unwrap()),
        vec![b]
    );
    assert_eq!(
        s.list(&Filter::in_state(State::Pending), Page::default())
            .await
            .unwrap()
            .len(),
        1
    );

    let page1 = ids(s.list(&Filter::dead(), Page::first(2)).await.unwrap());
    assert_eq!(page1, vec![a, b]);
    let page2 = ids(s
        .list(&Filter::dead(), Page::first(2).after(page1[1]))
        .await
        .unwrap());
    assert_eq!(page2, vec![c, d]);
    let page3 = s
        .list(&Filter::dead(), Page::first(2).after(page2[1]))
        .await
        .unwrap();
    assert!(page3.is_empty());
}

async fn delete_and_purge(s: &dyn Queue, _clock: &ManualClock) {
    let a = kill(s, "q", "timeout", Some("k")).await;
    let b = kill(s, "q", "http_500", None).await;
    let c = kill(s, "other", "timeout", None).await;
    let live = s.enqueue(msg("q", 1)).await.unwrap().id();

    assert!(s.delete(a).await.unwrap());
    assert!(!s.delete(a).await.unwrap());
    assert!(s.get(a).await.unwrap().is_none());
    // Its key is free again.
    assert!(
        !s.enqueue(msg("q", 2).dedup_key("k"))
            .await
            .unwrap()
            .is_duplicate()
    );

    assert_eq!(s.purge(&Filter::dead().queue("q")).await.unwrap(), 1);
    assert!(s.get(b).await.unwrap().is_none());
    assert!(s.get(c).await.unwrap().is_some(), "other queues untouched");
    assert!(
        s.get(live).await.unwrap().is_some(),
        "live messages untouched"
    );
    assert_eq!(s.purge(&Filter::dead()).await.unwrap(), 1);
}

async fn retention_prunes_done_and_old_dead(s: &dyn Queue, clock: &ManualClock) {
    let old_dead = kill(s, "q", "timeout", None).await;
    s.enqueue(msg("q", 1)).await.unwrap();
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    s.ack(&c.lease).await.unwrap();
    let old_done = c.message.id;

    clock.advance(Duration::from_secs(8 * 24 * 3600));
    s.enqueue(msg("q", 2)).await.unwrap();
    let c = s.claim("q", 1, LEASE).await.unwrap().remove(0);
    s.ack(&c.lease).await.unwrap();
    let new_done = c.message.id;
    let pending = s.enqueue(msg("q", 3)).await.unwrap().id();

    let pruned = s.prune(&Retention::default()).await.unwrap();
    assert_eq!((pruned.done, pruned.dead), (1, 0));
    assert!(s.get(old_done).await.unwrap().is_none());
    assert!(s.get(new_done).await.unwrap().is_some());
    assert!(
        s.get(old_dead).await.unwrap().is_some(),
        "dead kept 30 days"
    );
    assert!(s.get(pending).await.unwrap().is_some());

    clock.advance(Duration::from_secs(30 * 24 * 3600));
    let keep_dead = Retention {
        dead: None,
        ..Retention::default()
    };
    let pruned = s.prune(&keep_dead).await.unwrap();
    assert_eq!((pruned.done, pruned.dead), (1, 0), "dead kept when told");
    assert!(s.get(old_dead).await.unwrap().is_some());
    let pruned = s.prune(&Retention::default()).await.unwrap();
    assert_eq!((pruned.done, pruned.dead), (0, 1));
    assert!(s.get(old_dead).await.unwrap().is_none());
    assert!(
        s.get(pending).await.unwrap().is_some(),
        "live messages are never pruned"
    );
}

async fn stats_by_queue(s: &dyn Queue, clock: &ManualClock) {
    kill(s, "a", "timeout", None).await;
    kill(s, "a", "timeout", None).await;
    s.enqueue(msg("a", 1)).await.unwrap();
    s.enqueue(msg("a", 2).delay(Duration::from_secs(3600)))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(30));
    s.enqueue(msg("a", 3)).await.unwrap();
    s.enqueue(msg("b", 1)).await.unwrap();
    s.enqueue(msg("b", 2)).await.unwrap();
    let c = s.claim("b", 1, LEASE).await.unwrap().remove(0);
    clock.advance(Duration::from_secs(5));

    let stats = s.stats().await.unwrap();
    assert_eq!(stats.len(), 2);
    let a = &stats[0];
    assert_eq!(a.queue, "a");
    assert_eq!(a.count(State::Dead), 2);
    assert_eq!(a.dead(), 2);
    assert_eq!(a.count(State::Pending), 3);
    assert_eq!(a.count(State::Done), 0);
    assert_eq!(a.depth(), 3);
    assert_eq!(
        a.oldest_due_age,
        Duration::from_secs(35),
        "delayed messages are not due"
    );
    let b = &stats[1];
    assert_eq!((b.count(State::Pending), b.count(State::Running)), (1, 1));
    assert_eq!(b.oldest_due_age, Duration::from_secs(5));

    // Above the warning threshold warns (2 > 1); at it is ok.
    let thresholds = AlertThresholds::new(1, 3).unwrap();
    assert_eq!(thresholds.check(a.dead()), AlertLevel::Warn);
    assert_eq!(
        AlertThresholds::new(2, 3).unwrap().check(a.dead()),
        AlertLevel::Ok
    );
    assert_eq!(thresholds.check(b.dead()), AlertLevel::Ok);
    s.ack(&c.lease).await.unwrap();
    assert_eq!(s.stats().await.unwrap()[1].count(State::Done), 1);
}

async fn replay_and_run_now_take_retrying_messages(s: &dyn Queue, clock: &ManualClock) {
    let a = s.enqueue(msg("q", 1).dedup_key("a")).await.unwrap().id();
    let b = s.enqueue(msg("q", 2)).await.unwrap().id();
    let c = s.enqueue(msg("other", 3)).await.unwrap().id();
    let later = s.enqueue(msg("q", 4).delay(3600 * SEC)).await.unwrap().id();
    let mut claimed = s.claim("q", 2, LEASE).await.unwrap();
    claimed.extend(s.claim("other", 1, LEASE).await.unwrap());
    for cl in &claimed {
        let parked = Failure::retryable("http_503", "Retry-After").after(60 * SEC);
        assert_eq!(s.fail(&cl.lease, parked).await.unwrap(), State::Retrying);
    }
    clock.advance(SEC);

    // Replay of a retrying message: pending, due now, attempts reset, history kept.
    s.replay(a).await.unwrap();
    let m = s.get(a).await.unwrap().unwrap();
    assert_eq!(
        (m.state, m.attempts, m.run_at),
        (State::Pending, 0, start() + SEC)
    );
    assert_eq!((m.errors.len(), m.waiting_since), (1, None));
    assert_eq!(
        s.enqueue(msg("q", 9).dedup_key("a")).await.unwrap(),
        Enqueued::Duplicate(a),
        "still holds its key"
    );

    // Run now: due now, attempts and state kept.
    s.run_now(b).await.unwrap();
    let m = s.get(b).await.unwrap().unwrap();
    assert_eq!(
        (m.state, m.attempts, m.run_at),
        (State::Retrying, 1, start() + SEC)
    );
    s.run_now(later).await.unwrap();
    assert_eq!(s.get(later).await.unwrap().unwrap().run_at, start() + SEC);
    let due: Vec<_> = s
        .claim("q", 10, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.message.id, c.lease.attempt))
        .collect();
    assert_eq!(due.len(), 3);
    assert!(due.contains(&(a, 1)) && due.contains(&(b, 2)) && due.contains(&(later, 1)));

    // Neither applies to a running (or done) message.
    assert!(matches!(
        s.run_now(a).await,
        Err(Error::WrongState {
            actual: State::Running,
            expected: State::Retrying,
            ..
        })
    ));
    assert!(matches!(
        s.replay(a).await,
        Err(Error::WrongState {
            actual: State::Running,
            expected: State::Dead,
            ..
        })
    ));
    let missing = crate::MessageId::new();
    assert!(matches!(s.run_now(missing).await, Err(Error::NotFound(x)) if x == missing));

    // Bulk replay selects retrying messages too.
    assert_eq!(
        s.replay_matching(&Filter::in_state(State::Retrying))
            .await
            .unwrap(),
        1
    );
    let m = s.get(c).await.unwrap().unwrap();
    assert_eq!((m.state, m.attempts), (State::Pending, 0));
}
