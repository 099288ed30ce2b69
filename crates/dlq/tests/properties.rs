//! Property tests: random operation sequences keep the queue's invariants; parsers never panic.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use steadfast_dlq::{
    Failure, Filter, Lease, ManualClock, MemoryQueue, MessageId, NewMessage, Page, QueueAdmin,
    QueueConfig, QueueStore, State,
};

#[derive(Debug, Clone)]
enum Op {
    Enqueue { key: Option<u8>, max_attempts: u32 },
    Claim { n: usize, lease_secs: u64 },
    Ack(usize),
    Fail { which: usize, retryable: bool },
    Release(usize),
    Extend(usize),
    Advance(u64),
    ReplayAll,
    Prune,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (proptest::option::of(0u8..4), 1u32..4)
            .prop_map(|(key, max_attempts)| Op::Enqueue { key, max_attempts }),
        (0usize..4, 1u64..20).prop_map(|(n, lease_secs)| Op::Claim { n, lease_secs }),
        (0usize..8).prop_map(Op::Ack),
        (0usize..8, any::<bool>()).prop_map(|(which, retryable)| Op::Fail { which, retryable }),
        (0usize..8).prop_map(Op::Release),
        (0usize..8).prop_map(Op::Extend),
        (0u64..30).prop_map(Op::Advance),
        Just(Op::ReplayAll),
        Just(Op::Prune),
    ]
}

async fn all(store: &MemoryQueue) -> Vec<steadfast_dlq::Message> {
    let mut out = Vec::new();
    for state in State::ALL {
        out.extend(
            store
                .list(&Filter::in_state(state), Page::first(1000))
                .await
                .unwrap(),
        );
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_operations_keep_the_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let clock = ManualClock::starting_now();
            let store = MemoryQueue::with_config(
                QueueConfig::builder().clock(Arc::new(clock.clone())).build().unwrap(),
            );
            let mut leases: Vec<Lease> = Vec::new();
            for op in ops {
                match op {
                    Op::Enqueue { key, max_attempts } => {
                        let mut m = NewMessage::new("q", json!(null)).max_attempts(max_attempts);
                        if let Some(k) = key {
                            m = m.dedup_key(format!("k{k}"));
                        }
                        store.enqueue(m).await.unwrap();
                    }
                    Op::Claim { n, lease_secs } => {
                        let claimed = store.claim("q", n, Duration::from_secs(lease_secs)).await.unwrap();
                        prop_assert!(claimed.len() <= n);
                        for c in claimed {
                            prop_assert!(c.lease.attempt <= c.lease.max_attempts);
                            leases.push(c.lease);
                        }
                    }
                    Op::Ack(i) if i < leases.len() => { let _ = store.ack(&leases[i]).await; }
                    Op::Fail { which, retryable } if which < leases.len() => {
                        let f = if retryable { Failure::retryable("x", "y") } else { Failure::fatal("x", "y") };
                        if let Ok(state) = store.fail(&leases[which], f).await {
                            prop_assert!(matches!(state, State::Retrying | State::Dead));
                        }
                    }
                    Op::Release(i) if i < leases.len() => { let _ = store.release(&leases[i]).await; }
                    Op::Extend(i) if i < leases.len() => {
                        if let Ok(l) = store.extend(&leases[i], Duration::from_secs(5)).await {
                            leases[i] = l;
                        }
                    }
                    Op::Advance(s) => clock.advance(Duration::from_secs(s)),
                    Op::ReplayAll => { store.replay_matching(&Filter::dead()).await.unwrap(); }
                    Op::Prune => { store.prune(&Default::default()).await.unwrap(); }
                    _ => {}
                }
                // Invariants after every step.
                let messages = all(&store).await;
                let mut keys = HashSet::new();
                for m in &messages {
                    prop_assert!(m.attempts <= m.max_attempts, "{m:?}");
                    prop_assert_eq!(m.state == State::Running, m.lease_owner.is_some());
                    prop_assert_eq!(m.lease_owner.is_some(), m.lease_expires_at.is_some());
                    // Done messages keep their keys until pruned (the default).
                    if let Some(k) = &m.dedup_key {
                        prop_assert!(keys.insert(k.clone()), "two retained messages share {k}");
                    }
                    let errors_attempts: Vec<u32> = m.errors.iter().map(|e| e.attempt).collect();
                    prop_assert!(errors_attempts.iter().all(|&a| a >= 1 && a <= m.max_attempts));
                }
                let stats = store.stats().await.unwrap();
                let counted: u64 = stats.iter().flat_map(|s| s.counts.values()).sum();
                prop_assert_eq!(counted, messages.len() as u64);
            }
            Ok(())
        })?;
    }

    #[test]
    fn parsing_ids_and_states_never_panics(s in ".{0,64}") {
        let _ = s.parse::<MessageId>();
        let _ = s.parse::<State>();
    }

    #[test]
    fn states_and_ids_round_trip(i in 0usize..5) {
        let state = State::ALL[i];
        prop_assert_eq!(state.to_string().parse::<State>().unwrap(), state);
        let id = MessageId::new();
        prop_assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
    }

    #[test]
    fn invalid_priorities_are_typed_errors(p in 10u8..=255) {
        let err = NewMessage::new("q", json!(1)).priority(p).validate().unwrap_err();
        prop_assert!(matches!(err, steadfast_dlq::Error::InvalidInput(_)));
    }
}

/// One step of a sequence that exercises every state change the memory store indexes.
#[derive(Debug, Clone)]
enum IndexOp {
    Enqueue {
        queue: usize,
        priority: u8,
        delay_secs: u64,
        key: Option<u8>,
        max_attempts: u32,
    },
    Claim {
        queue: usize,
        n: usize,
        lease_secs: u64,
    },
    Ack(usize),
    Fail {
        which: usize,
        retryable: bool,
        after_secs: Option<u64>,
    },
    Release(usize),
    Extend(usize, u64),
    Advance(u64),
    ReplayAll,
    Delete(usize),
    Prune,
    PurgeDead,
}

const QUEUES: [&str; 2] = ["a", "b"];

fn index_op() -> impl Strategy<Value = IndexOp> {
    prop_oneof![
        3 => (0usize..2, 0u8..4, prop_oneof![Just(0u64), 1u64..15], proptest::option::of(0u8..6), 1u32..4)
            .prop_map(|(queue, priority, delay_secs, key, max_attempts)| IndexOp::Enqueue {
                queue, priority, delay_secs, key, max_attempts,
            }),
        3 => (0usize..2, 0usize..6, 1u64..20)
            .prop_map(|(queue, n, lease_secs)| IndexOp::Claim { queue, n, lease_secs }),
        1 => (0usize..16).prop_map(IndexOp::Ack),
        1 => (0usize..16, any::<bool>(), proptest::option::of(0u64..10))
            .prop_map(|(which, retryable, after_secs)| IndexOp::Fail { which, retryable, after_secs }),
        1 => (0usize..16).prop_map(IndexOp::Release),
        1 => (0usize..16, 1u64..20).prop_map(|(i, s)| IndexOp::Extend(i, s)),
        2 => (0u64..25).prop_map(IndexOp::Advance),
        1 => Just(IndexOp::ReplayAll),
        1 => (0usize..16).prop_map(IndexOp::Delete),
        1 => Just(IndexOp::Prune),
        1 => Just(IndexOp::PurgeDead),
    ]
}

/// What a claim must do, chosen by brute force over every stored message: the ids buried
/// (running on their last attempt, lease lapsed) and the ids claimed, in claim order.
fn brute_force_claim(
    messages: &[steadfast_dlq::Message],
    queue: &str,
    n: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> (HashSet<MessageId>, Vec<MessageId>) {
    let lapsed = |m: &&steadfast_dlq::Message| m.queue == queue && m.run_at <= now;
    let buried = messages
        .iter()
        .filter(lapsed)
        .filter(|m| m.state == State::Running && m.attempts >= m.max_attempts)
        .map(|m| m.id)
        .collect::<HashSet<_>>();
    let mut due: Vec<&steadfast_dlq::Message> = messages
        .iter()
        .filter(lapsed)
        .filter(|m| matches!(m.state, State::Pending | State::Retrying | State::Running))
        .filter(|m| !buried.contains(&m.id))
        .collect();
    due.sort_by_key(|m| (m.priority, m.run_at, m.id));
    (buried, due.iter().take(n).map(|m| m.id).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The memory store claims from an index kept up to date on every state change; after
    /// any sequence of operations it must pick exactly what a sort of everything would.
    #[test]
    fn claims_agree_with_a_brute_force_selection(ops in proptest::collection::vec(index_op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let clock = ManualClock::starting_now();
            let store = MemoryQueue::with_config(
                QueueConfig::builder().clock(Arc::new(clock.clone())).build().unwrap(),
            );
            let mut leases: Vec<Lease> = Vec::new();
            let mut ids: Vec<MessageId> = Vec::new();
            for op in ops {
                match op {
                    IndexOp::Enqueue { queue, priority, delay_secs, key, max_attempts } => {
                        let mut m = NewMessage::new(QUEUES[queue], json!(null))
                            .priority(priority)
                            .delay(Duration::from_secs(delay_secs))
                            .max_attempts(max_attempts);
                        if let Some(k) = key {
                            m = m.dedup_key(format!("k{k}"));
                        }
                        ids.push(store.enqueue(m).await.unwrap().id());
                    }
                    IndexOp::Claim { queue, n, lease_secs } => {
                        let now = chrono::DateTime::<chrono::Utc>::from(
                            steadfast_dlq::WallClock::now(&clock),
                        );
                        let before = all(&store).await;
                        let (buried, expected) = brute_force_claim(&before, QUEUES[queue], n, now);
                        let claimed = store
                            .claim(QUEUES[queue], n, Duration::from_secs(lease_secs))
                            .await
                            .unwrap();
                        let got: Vec<MessageId> = claimed.iter().map(|c| c.lease.id).collect();
                        prop_assert_eq!(&got, &expected);
                        for id in &buried {
                            let m = store.get(*id).await.unwrap().unwrap();
                            prop_assert_eq!(m.state, State::Dead);
                        }
                        leases.extend(claimed.into_iter().map(|c| c.lease));
                    }
                    IndexOp::Ack(i) if i < leases.len() => { let _ = store.ack(&leases[i]).await; }
                    IndexOp::Fail { which, retryable, after_secs } if which < leases.len() => {
                        let mut f = if retryable { Failure::retryable("x", "y") } else { Failure::fatal("x", "y") };
                        if let Some(s) = after_secs {
                            f = f.after(Duration::from_secs(s));
                        }
                        let _ = store.fail(&leases[which], f).await;
                    }
                    IndexOp::Release(i) if i < leases.len() => { let _ = store.release(&leases[i]).await; }
                    IndexOp::Extend(i, s) if i < leases.len() => {
                        if let Ok(l) = store.extend(&leases[i], Duration::from_secs(s)).await {
                            leases[i] = l;
                        }
                    }
                    IndexOp::Advance(s) => clock.advance(Duration::from_secs(s)),
                    IndexOp::ReplayAll => { store.replay_matching(&Filter::dead()).await.unwrap(); }
                    IndexOp::Delete(i) if i < ids.len() => { store.delete(ids[i]).await.unwrap(); }
                    IndexOp::Prune => {
                        let retention = steadfast_dlq::Retention {
                            done: Duration::from_secs(10),
                            dead: Some(Duration::from_secs(30)),
                        };
                        store.prune(&retention).await.unwrap();
                    }
                    IndexOp::PurgeDead => {
                        store.purge(&Filter::dead()).await.unwrap();
                    }
                    _ => {}
                }
            }
            Ok(())
        })?;
    }
}
