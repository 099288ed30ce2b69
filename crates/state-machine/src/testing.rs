//! The conformance suite every [`SnapshotStore`] must pass, for adapter authors (feature
//! `testing`).
//!
//! [`conformance`] checks the store alone (save and load, optimistic versions, two writers of
//! one version, the due order, delete, pruning idle instances) and under [`Machines`]
//! (concurrent sends lose nothing, the sweeper fires timeouts when due, backs off when a writer
//! saved first and is not starved by failing instances, atomic updates, migration of stored old
//! versions). It panics with an assertion message at the first violation, which is what a test
//! wants. Our `MemorySnapshots` and `PostgresSnapshots` run this same suite
//! (`tests/conformance.rs`).
//!
//! ```rust,no_run
//! use std::sync::Arc;
//! use steadfast_state_machine::MemorySnapshots;
//!
//! # async fn demo() {
//! steadfast_state_machine::testing::conformance(Arc::new(MemorySnapshots::new())).await;
//! # }
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::conversation::{self, ConvContext, ConvEvent, ConvEventKind, ConvState, IDLE_TIMEOUT};
use crate::{Definition, Edge, Error, Machines, Registry, SnapshotStore};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::json;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

/// Runs the whole suite against `store`; panics at the first violation.
///
/// `store` must be empty (a fresh store, schema or table): the last case prunes every instance
/// and checks none is left. The suite spawns tasks, so run it on a multi-threaded tokio
/// runtime (`#[tokio::test(flavor = "multi_thread")]`).
pub async fn conformance(store: Arc<dyn SnapshotStore>) {
    save_and_load(&*store).await;
    versions_are_checked(&*store).await;
    two_writers_one_wins(&store).await;
    due_lists_only_due_instances_in_order(&*store).await;
    delete_removes(&*store).await;
    concurrent_sends_lose_nothing(store.clone()).await;
    sweeper_fires_timeouts_exactly_when_due(store.clone()).await;
    sweeper_backs_off_when_a_writer_saved_first(store.clone()).await;
    failing_instances_do_not_starve_the_sweeper(store.clone()).await;
    update_applies_several_events_atomically(store.clone()).await;
    update_from_starts_from_the_callers_copy(store.clone()).await;
    stored_old_versions_are_migrated(store.clone()).await;
    // Last: it removes every instance the steps above left.
    idle_instances_are_pruned(&*store).await;
}

async fn idle_instances_are_pruned(store: &dyn SnapshotStore) {
    store.save("idle-a", 0, &json!(1), None).await.unwrap();
    store
        .save("idle-b", 0, &json!(2), Some(t0()))
        .await
        .unwrap();
    let hour = TimeDelta::hours(1);
    // Nothing was saved an hour ago or earlier.
    assert_eq!(store.prune_idle(Utc::now() - hour, 1000).await.unwrap(), 0);
    assert!(store.load("idle-a").await.unwrap().is_some());
    // Everything was saved before an hour from now: `limit` bounds one call...
    assert_eq!(store.prune_idle(Utc::now() + hour, 1).await.unwrap(), 1);
    // ...and the rest goes in the next ones, whatever the version.
    while store.prune_idle(Utc::now() + hour, 1000).await.unwrap() > 0 {}
    assert_eq!(store.load("idle-a").await.unwrap(), None);
    assert_eq!(store.load("idle-b").await.unwrap(), None);
    assert_eq!(store.load("sl").await.unwrap(), None);
    // A pruned instance is gone from the sweeper's view too, and its key starts afresh.
    assert!(
        store
            .due(t0() + TimeDelta::days(1000), 1000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.save("idle-a", 0, &json!(3), None).await.unwrap(), 1);
    assert_eq!(store.prune_idle(Utc::now() - hour, 1000).await.unwrap(), 0);
}

async fn save_and_load(store: &dyn SnapshotStore) {
    assert_eq!(store.load("sl").await.unwrap(), None);
    let v = json!({"state": "a", "n": 1});
    assert_eq!(store.save("sl", 0, &v, Some(t0())).await.unwrap(), 1);
    let s = store.load("sl").await.unwrap().unwrap();
    assert_eq!((s.key.as_str(), s.version, s.due_at), ("sl", 1, Some(t0())));
    assert_eq!(s.instance, v);
    let v2 = json!({"state": "b", "n": 2});
    assert_eq!(store.save("sl", 1, &v2, None).await.unwrap(), 2);
    let s = store.load("sl").await.unwrap().unwrap();
    assert_eq!((s.version, s.due_at, &s.instance), (2, None, &v2));
}

async fn versions_are_checked(store: &dyn SnapshotStore) {
    let v = json!({"x": 1});
    // Updating a key that does not exist.
    let e = store.save("vc", 3, &v, None).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Conflict {
                expected: 3,
                actual: None,
                ..
            }
        ),
        "{e}"
    );
    store.save("vc", 0, &v, None).await.unwrap();
    // Creating a key that exists.
    let e = store
        .save("vc", 0, &json!({"x": 2}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Conflict {
                expected: 0,
                actual: Some(1),
                ..
            }
        ),
        "{e}"
    );
    // A stale or future version.
    for wrong in [2, 7] {
        let e = store
            .save("vc", wrong, &json!({"x": 3}), None)
            .await
            .unwrap_err();
        assert!(e.is_conflict(), "{e}");
    }
    let s = store.load("vc").await.unwrap().unwrap();
    assert_eq!(
        (s.version, &s.instance),
        (1, &v),
        "failed saves wrote nothing"
    );
}

async fn two_writers_one_wins(store: &Arc<dyn SnapshotStore>) {
    for round in 0..10u64 {
        let key = format!("race-{round}");
        store
            .save(&key, 0, &json!({"w": "init"}), None)
            .await
            .unwrap();
        // Both load version 1, then both save.
        let n = store.load(&key).await.unwrap().unwrap().version;
        let (va, vb) = (json!({"w": "a"}), json!({"w": "b"}));
        let (a, b) = tokio::join!(
            store.save(&key, n, &va, None),
            store.save(&key, n, &vb, None)
        );
        let winner = match (&a, &b) {
            (
                Ok(2),
                Err(Error::Conflict {
                    actual: Some(2), ..
                }),
            ) => "a",
            (
                Err(Error::Conflict {
                    actual: Some(2), ..
                }),
                Ok(2),
            ) => "b",
            other => panic!("expected exactly one winner, got {other:?}"),
        };
        let s = store.load(&key).await.unwrap().unwrap();
        assert_eq!((s.version, &s.instance), (2, &json!({ "w": winner })));
    }
}

async fn due_lists_only_due_instances_in_order(store: &dyn SnapshotStore) {
    let base = t0() + TimeDelta::days(100);
    for (key, due) in [
        ("due-c", Some(30)),
        ("due-a", Some(10)),
        ("due-b", Some(20)),
        ("due-n", None),
    ] {
        store
            .save(key, 0, &json!({ "k": key }), due.map(|d| base + secs(d)))
            .await
            .unwrap();
    }
    let keys = |v: Vec<crate::Snapshot>| {
        v.into_iter()
            .map(|s| s.key)
            .filter(|k| k.starts_with("due-"))
            .collect::<Vec<_>>()
    };
    assert!(keys(store.due(base + secs(9), 100).await.unwrap()).is_empty());
    assert_eq!(
        keys(store.due(base + secs(10), 100).await.unwrap()),
        ["due-a"]
    );
    assert_eq!(
        keys(store.due(base + secs(25), 100).await.unwrap()),
        ["due-a", "due-b"]
    );
    assert_eq!(
        keys(store.due(base + secs(1000), 100).await.unwrap()),
        ["due-a", "due-b", "due-c"]
    );
    // The limit takes the earliest.
    let limited = store.due(base + secs(1000), 2).await.unwrap();
    assert_eq!(limited.len(), 2);
    assert!(limited.iter().all(|s| s.due_at <= Some(base + secs(20))));
    // Saving without a due time takes it out of the index; a new due time moves it.
    store.save("due-a", 1, &json!({}), None).await.unwrap();
    store
        .save("due-c", 1, &json!({}), Some(base + secs(5)))
        .await
        .unwrap();
    assert_eq!(
        keys(store.due(base + secs(25), 100).await.unwrap()),
        ["due-c", "due-b"]
    );
    for key in ["due-a", "due-b", "due-c", "due-n"] {
        store.delete(key).await.unwrap();
    }
}

async fn delete_removes(store: &dyn SnapshotStore) {
    store.save("del", 0, &json!(1), Some(t0())).await.unwrap();
    assert!(store.delete("del").await.unwrap());
    assert!(!store.delete("del").await.unwrap());
    assert_eq!(store.load("del").await.unwrap(), None);
    assert!(
        store
            .due(t0() + TimeDelta::days(1000), 1000)
            .await
            .unwrap()
            .iter()
            .all(|s| s.key != "del")
    );
    // The key can be created again from version 0.
    assert_eq!(store.save("del", 0, &json!(2), None).await.unwrap(), 1);
}

fn msg(text: String) -> ConvEvent {
    ConvEvent::UserMessage { text }
}

async fn concurrent_sends_lose_nothing(store: Arc<dyn SnapshotStore>) {
    let machines = Machines::new(conversation::definition(), store).conflict_retries(32);
    let writers = 8;
    let mut tasks = Vec::new();
    for n in 0..writers {
        let m = machines.clone();
        tasks.push(tokio::spawn(async move {
            m.send("wa:250788000001", msg(format!("m{n}")), t0()).await
        }));
    }
    for t in tasks {
        let applied = t.await.unwrap().unwrap();
        assert_eq!(applied.instance.state(), ConvState::ProcessingIntent);
    }
    let conv = machines.load("wa:250788000001").await.unwrap().unwrap();
    assert_eq!(conv.version(), writers);
    let texts: BTreeSet<String> = conv
        .context()
        .last_messages
        .iter()
        .map(|m| m.text.clone())
        .collect();
    let expected: BTreeSet<String> = (0..writers).map(|n| format!("m{n}")).collect();
    assert_eq!(texts, expected, "every writer's message is kept");
    // Every writer's transition is in the history: the first (idle → processing_intent) as
    // its own record, the repeats of processing_intent → processing_intent counted on one.
    let counted: u64 = conv.history().iter().map(|r| r.count()).sum();
    assert_eq!(counted, writers);
    assert_eq!(conv.history().len(), 2);

    // A typed save from a stale copy is refused and changes nothing.
    let mut stale = conv.clone();
    let mut fresh = conv.clone();
    machines
        .definition()
        .send(&mut fresh, msg("fresh".into()), t0())
        .unwrap();
    machines.save("wa:250788000001", &mut fresh).await.unwrap();
    assert_eq!(fresh.version(), writers + 1);
    machines
        .definition()
        .send(&mut stale, msg("stale".into()), t0())
        .unwrap();
    let e = machines
        .save("wa:250788000001", &mut stale)
        .await
        .unwrap_err();
    assert!(e.is_conflict());
    assert_eq!(stale.version(), writers, "a failed save leaves the version");
    let back = machines.load("wa:250788000001").await.unwrap().unwrap();
    assert_eq!(back, fresh);
}

async fn sweeper_fires_timeouts_exactly_when_due(store: Arc<dyn SnapshotStore>) {
    let machines = Machines::new(conversation::definition(), store);
    let timeout = TimeDelta::from_std(IDLE_TIMEOUT).unwrap();
    let start = t0() + TimeDelta::days(10);
    // Three conversations waiting for input, entered one minute apart; one processing (no timeout).
    for n in 0..3 {
        machines
            .send(
                &format!("sw-{n}"),
                ConvEvent::Start,
                start + TimeDelta::minutes(n),
            )
            .await
            .unwrap();
    }
    machines
        .send("sw-busy", msg("hi".into()), start)
        .await
        .unwrap();

    let before = machines
        .sweep(start + timeout - secs(1), 100)
        .await
        .unwrap();
    assert!(
        before.fired.is_empty() && before.failed.is_empty(),
        "{before:?}"
    );

    let at = start + timeout + TimeDelta::minutes(1);
    let report = machines.sweep(at, 100).await.unwrap();
    let fired: Vec<&str> = report.fired.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(fired, ["sw-0", "sw-1"], "{report:?}");
    for (_, t) in &report.fired {
        assert_eq!(
            (t.from, t.to, t.event),
            (ConvState::AwaitingInput, ConvState::Idle, "timeout")
        );
    }
    let c0 = machines.load("sw-0").await.unwrap().unwrap();
    assert_eq!((c0.state(), c0.version()), (ConvState::Idle, 2));
    assert_eq!(machines.definition().due_at(&c0), None);
    let c2 = machines.load("sw-2").await.unwrap().unwrap();
    assert_eq!(c2.state(), ConvState::AwaitingInput);

    // Fired ones are no longer due; the last one is, a minute later.
    let again = machines.sweep(at, 100).await.unwrap();
    assert!(again.fired.is_empty(), "{again:?}");
    let last = machines
        .sweep(at + TimeDelta::minutes(1), 100)
        .await
        .unwrap();
    assert_eq!(last.fired.len(), 1);
    assert_eq!(last.fired[0].0, "sw-2");
    let busy = machines.load("sw-busy").await.unwrap().unwrap();
    assert_eq!(busy.state(), ConvState::ProcessingIntent);
}

/// A store wrapper that plays "another worker": right after the sweeper lists due instances,
/// it saves each of them once more (a user message arriving at that moment).
struct WriterRacesSweeper {
    inner: Arc<dyn SnapshotStore>,
}

#[async_trait::async_trait]
impl SnapshotStore for WriterRacesSweeper {
    async fn load(&self, key: &str) -> Result<Option<crate::Snapshot>, Error> {
        self.inner.load(key).await
    }
    async fn save(
        &self,
        key: &str,
        expected_version: u64,
        instance: &serde_json::Value,
        due_at: Option<DateTime<Utc>>,
    ) -> Result<u64, Error> {
        self.inner
            .save(key, expected_version, instance, due_at)
            .await
    }
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<crate::Snapshot>, Error> {
        let due = self.inner.due(now, limit).await?;
        for s in &due {
            self.inner
                .save(&s.key, s.version, &s.instance, s.due_at)
                .await?;
        }
        Ok(due)
    }
    async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.inner.delete(key).await
    }
    async fn prune_idle(&self, saved_before: DateTime<Utc>, limit: usize) -> Result<u64, Error> {
        self.inner.prune_idle(saved_before, limit).await
    }
}

async fn sweeper_backs_off_when_a_writer_saved_first(store: Arc<dyn SnapshotStore>) {
    let start = t0() + TimeDelta::days(20);
    let plain = Machines::new(conversation::definition(), store.clone());
    plain
        .send("race-sweep", ConvEvent::Start, start)
        .await
        .unwrap();
    let racing = Machines::new(
        conversation::definition(),
        Arc::new(WriterRacesSweeper { inner: store }),
    );
    let at = start + TimeDelta::from_std(IDLE_TIMEOUT).unwrap();
    let report = racing.sweep(at, 100).await.unwrap();
    assert!(report.fired.is_empty(), "{report:?}");
    assert_eq!(report.conflicts, ["race-sweep"]);
    // The other writer's save stands; the sweeper did not overwrite it.
    let conv = plain.load("race-sweep").await.unwrap().unwrap();
    assert_eq!(
        (conv.state(), conv.version()),
        (ConvState::AwaitingInput, 2)
    );
    // A later sweep (no race) fires it.
    let report = plain.sweep(at, 100).await.unwrap();
    assert_eq!(report.fired.len(), 1);
    plain.store().delete("race-sweep").await.unwrap();
}

/// Instances the sweeper cannot fire (a timeout event without a transition, a snapshot that
/// cannot be restored) are moved back in the due order with a bounded, doubling backoff, so
/// that `limit` of them cannot keep a healthy instance from ever firing.
async fn failing_instances_do_not_starve_the_sweeper(store: Arc<dyn SnapshotStore>) {
    use ConvState::{AwaitingInput, Error as Stuck, Idle};
    let ten = std::time::Duration::from_secs(10);
    // `Stuck` times out with an event nothing handles; `AwaitingInput` times out to `Idle`.
    let def = Arc::new(
        Definition::<ConvState, ConvEvent, ConvContext>::builder("starve", 1)
            .state(Idle)
            .state(AwaitingInput)
            .state(Stuck)
            .transition(Idle, ConvEventKind::Start, AwaitingInput)
            .transition(Idle, ConvEventKind::Fail, Stuck)
            .transition(AwaitingInput, ConvEventKind::Timeout, Idle)
            .transition(Stuck, ConvEventKind::Reset, Idle)
            .after(AwaitingInput, ten, ConvEvent::Timeout)
            .after(Stuck, ten, ConvEvent::Timeout)
            .build()
            .unwrap(),
    );
    let first = TimeDelta::minutes(1);
    let machines = Machines::new(def, store.clone()).failure_backoff(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_secs(150),
    );
    let start = t0() + TimeDelta::days(30);
    machines
        .send(
            "starve-stuck",
            ConvEvent::Fail { reason: "x".into() },
            start,
        )
        .await
        .unwrap();
    // A snapshot no registered definition can restore, due as early.
    store
        .save(
            "starve-gone",
            0,
            &json!({"definition": "retired", "definition_version": 9}),
            Some(start + secs(10)),
        )
        .await
        .unwrap();
    machines
        .send("starve-healthy", ConvEvent::Start, start + secs(1))
        .await
        .unwrap();
    let ours = |keys: Vec<String>| {
        keys.into_iter()
            .filter(|k| k.starts_with("starve-"))
            .collect::<Vec<_>>()
    };

    // Two failing instances come first in the due order; a limit of two takes only them.
    let at = start + secs(20);
    let report = machines.sweep(at, 2).await.unwrap();
    assert!(report.fired.is_empty(), "{report:?}");
    let failed = ours(report.failed.iter().map(|(k, _)| k.clone()).collect());
    assert_eq!(failed, ["starve-gone", "starve-stuck"], "{report:?}");
    assert!(
        report
            .failed
            .iter()
            .any(|(_, e)| matches!(e, Error::NoTransition { .. }))
    );
    let mut backed: Vec<_> = report.backed_off.clone();
    backed.sort();
    assert_eq!(
        backed,
        [
            ("starve-gone".to_owned(), 1, at + first),
            ("starve-stuck".to_owned(), 1, at + first)
        ]
    );
    // The count is recorded with the stored instance.
    let stuck = store.load("starve-stuck").await.unwrap().unwrap();
    assert_eq!(
        (stuck.due_at, &stuck.instance["sweep_failures"]),
        (Some(at + first), &json!(1))
    );

    // They no longer block: the next sweep, same limit, fires the healthy one.
    let report = machines.sweep(at, 2).await.unwrap();
    let fired: Vec<_> = report.fired.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(fired, ["starve-healthy"], "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");

    // Failing again doubles the delay, up to the maximum (150 s).
    let later = at + first;
    let report = machines.sweep(later, 10).await.unwrap();
    assert!(
        report
            .backed_off
            .contains(&("starve-stuck".to_owned(), 2, later + first * 2)),
        "{report:?}"
    );
    let latest = later + first * 2;
    let report = machines.sweep(latest, 10).await.unwrap();
    assert!(
        report
            .backed_off
            .contains(&("starve-stuck".to_owned(), 3, latest + secs(150))),
        "{report:?}"
    );

    // An event that moves the instance on drops the count and the backoff with it.
    let applied = machines
        .send("starve-stuck", ConvEvent::Reset, latest)
        .await
        .unwrap();
    assert_eq!(applied.instance.state(), Idle);
    let stuck = store.load("starve-stuck").await.unwrap().unwrap();
    assert_eq!(
        (stuck.due_at, stuck.instance.get("sweep_failures")),
        (None, None)
    );
    for key in ["starve-stuck", "starve-gone", "starve-healthy"] {
        store.delete(key).await.unwrap();
    }
}

async fn update_applies_several_events_atomically(store: Arc<dyn SnapshotStore>) {
    let machines = Machines::new(conversation::definition(), store).conflict_retries(32);
    let mut tasks = Vec::new();
    for n in 0..4 {
        let m = machines.clone();
        tasks.push(tokio::spawn(async move {
            m.update("upd", t0(), |def, conv| {
                def.send(conv, msg(format!("u{n}")), t0())?;
                if conv.state() == ConvState::ProcessingIntent {
                    def.send(
                        conv,
                        ConvEvent::IntentDetected {
                            intent: "support".into(),
                            needs_confirmation: false,
                        },
                        t0(),
                    )?;
                }
                Ok(conv.state())
            })
            .await
        }));
    }
    for t in tasks {
        let (state, conv) = t.await.unwrap().unwrap();
        assert_eq!(
            (state, conv.state()),
            (ConvState::AgentActive, ConvState::AgentActive)
        );
    }
    let conv = machines.load("upd").await.unwrap().unwrap();
    assert_eq!(conv.version(), 4);
    assert_eq!(conv.context().last_messages.len(), 4);
    // The first update made two transitions, the others one each (agent_active's repeated
    // user_message folded into one record).
    let counted: u64 = conv.history().iter().map(|r| r.count()).sum();
    assert_eq!(counted, 5);
    assert_eq!(conv.history().len(), 3);

    // An error from the closure saves nothing.
    let e = machines
        .update("upd", t0(), |def, conv| {
            def.send(conv, ConvEvent::Confirm, t0())
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoTransition { .. }));
    assert_eq!(machines.load("upd").await.unwrap().unwrap().version(), 4);
}

/// A caller that loaded first (to decide what to do) saves once, without a second load; a
/// save by someone else in between is a conflict that reloads and re-applies.
async fn update_from_starts_from_the_callers_copy(store: Arc<dyn SnapshotStore>) {
    let machines = Machines::new(conversation::definition(), store);
    let loaded = machines.load_or_new("from", t0()).await.unwrap();
    assert_eq!(loaded.1.version(), 0, "new: not stored yet");
    let (rounds, conv) = machines
        .update_from("from", loaded, t0(), |def, conv| {
            def.send(conv, msg("first".into()), t0())
        })
        .await
        .unwrap();
    assert_eq!(
        (rounds.to, conv.version()),
        (ConvState::ProcessingIntent, 1)
    );

    let stale = machines.load_or_new("from", t0()).await.unwrap();
    machines
        .send("from", msg("meanwhile".into()), t0())
        .await
        .unwrap();
    let mut rounds = 0;
    let (_, conv) = machines
        .update_from("from", stale, t0(), |def, conv| {
            rounds += 1;
            def.send(conv, msg("late".into()), t0())
        })
        .await
        .unwrap();
    assert_eq!(
        rounds, 2,
        "the stale copy conflicted once, the reloaded one saved"
    );
    assert_eq!(conv.version(), 3);
    let texts: Vec<_> = conv
        .context()
        .last_messages
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(texts, ["first", "meanwhile", "late"], "nothing lost");
    machines.store().delete("from").await.unwrap();
}

async fn stored_old_versions_are_migrated(store: Arc<dyn SnapshotStore>) {
    use ConvState::{Fallback, Idle};
    // v1 of a tiny machine, stored; then v2 replaces it and a migration renames a state.
    let v1 = Arc::new(
        Definition::<ConvState, ConvEvent, ConvContext>::builder("mig", 1)
            .state(Idle)
            .state(Fallback)
            .transition(Idle, ConvEventKind::Start, Fallback)
            .build()
            .unwrap(),
    );
    let old = Machines::new(v1.clone(), store.clone());
    old.send("mig-1", ConvEvent::Start, t0()).await.unwrap();

    let v2 = Arc::new(
        Definition::<ConvState, ConvEvent, ConvContext>::builder("mig", 2)
            .state(Idle)
            .state(ConvState::Error)
            .edge(Edge::new(Idle, ConvEventKind::Start, ConvState::Error))
            .transition(ConvState::Error, ConvEventKind::Reset, Idle)
            .build()
            .unwrap(),
    );
    let mut registry = Registry::new();
    registry.register(v2).unwrap();
    let current = Machines::with_registry(Arc::new(registry), "mig", store.clone()).unwrap();
    let e = current.load("mig-1").await.unwrap_err();
    assert!(
        matches!(e, Error::UnknownDefinition { version: 1, .. }),
        "{e}"
    );

    let mut registry = Registry::new();
    registry.register(current.definition().clone()).unwrap();
    registry.migration("mig", 1, 2, |mut v| {
        if v["state"] == "fallback" {
            v["state"] = "error".into();
        }
        Ok(v)
    });
    let current = Machines::with_registry(Arc::new(registry), "mig", store).unwrap();
    let loaded = current.load("mig-1").await.unwrap().unwrap();
    assert_eq!(
        (
            loaded.state(),
            loaded.definition_version(),
            loaded.version()
        ),
        (ConvState::Error, 2, 1)
    );
    let applied = current.send("mig-1", ConvEvent::Reset, t0()).await.unwrap();
    assert_eq!(
        (applied.instance.state(), applied.instance.version()),
        (Idle, 2)
    );
}
