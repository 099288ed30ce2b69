//! Crash injection: the runner is killed right after each record it writes, in turn, and
//! another runner resumes the saga from the store. No completed step's execute runs again, no
//! key ever changes, and no compensation is lost.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use steadfast_saga::{Entry, SagaId, SagaLog, SagaRunner, State};
use tokio::sync::Notify;

/// A scenario: the scripted results (set once), the steps (built for each runner, bound to
/// the one script so that results carry on across the crash), and the state it must end in.
#[derive(Clone, Copy)]
struct Scenario {
    results: fn(&Script),
    steps: fn(&Script) -> Vec<steadfast_saga::Step<Order>>,
    expected: State,
}

const ALL_SUCCEED: Scenario = Scenario {
    results: |_| {},
    steps: |s| {
        vec![
            s.step("a", true).into(),
            s.step("b", true).into(),
            s.step("c", true).into(),
        ]
    },
    expected: State::Completed,
};

const THIRD_FAILS: Scenario = Scenario {
    results: |s| {
        s.exec("c", vec![retryable("timeout"), permanent("declined")]);
        s.comp("a", vec![retryable("503"), Ok(())]);
    },
    steps: |s| {
        vec![
            s.step("a", true).into(),
            s.step("notify", false).into(),
            s.step("b", true).into(),
            s.step("c", true).into(),
            s.step("d", true).into(),
        ]
    },
    expected: State::Compensated,
};

const AFTER_PIVOT: Scenario = Scenario {
    results: |s| {
        s.exec("settle", vec![retryable("down"), retryable("down"), Ok(())]);
    },
    steps: |s| {
        vec![
            s.step("reserve", true).into(),
            s.step("payout", true).pivot().into(),
            s.step("settle", true).into(),
        ]
    },
    expected: State::Completed,
};

fn completed_steps(log: &SagaLog) -> Vec<String> {
    log.entries
        .iter()
        .filter_map(|e| match &e.entry {
            Entry::StepCompleted { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect()
}

/// Runs `scenario` with a crash after write `crash_at` (never, if it writes fewer), resumes
/// it, checks the invariants, and returns how many writes the first runner made.
async fn crash_and_resume(scenario: Scenario, crash_at: usize) -> usize {
    let script = Script::new();
    (scenario.results)(&script);
    let expected = scenario.expected;
    let store = memory();
    let crashed = Arc::new(Notify::new());
    let crashing = Arc::new(CrashAfter::new(store.clone(), crash_at, crashed.clone()));
    let a = SagaRunner::new(
        saga((scenario.steps)(&script)),
        crashing.clone(),
        config("a"),
    );
    let saga_id = SagaId::new("t").unwrap();
    let mut task = {
        let saga_id = saga_id.clone();
        tokio::spawn(async move { a.run(saga_id, Order { amount: 7 }).await })
    };
    tokio::select! {
        _ = crashed.notified() => task.abort(),
        done = &mut task => { done.unwrap().unwrap(); }
    }
    let writes = crashing.writes.load(Ordering::SeqCst);
    let calls_before = script.calls().len();
    let at_crash = store.load(&saga_id).await.unwrap();

    // Another process, after the dead one's lease lapsed.
    tokio::time::advance(Duration::from_secs(31)).await;
    let b = SagaRunner::new(saga((scenario.steps)(&script)), store.clone(), config("b"));
    while b.recover_once().await.unwrap() > 0 {}

    let Some(at_crash) = at_crash else {
        // Crashed before the saga was recorded: nothing ran, nothing to resume.
        assert_eq!(script.calls().len(), 0, "crash {crash_at}: nothing ran");
        return writes;
    };
    let log = store.load(&saga_id).await.unwrap().unwrap();
    assert_eq!(log.state(), expected, "crash after write {crash_at}");
    let calls = script.calls();
    for c in &calls {
        assert_eq!(
            c.key,
            format!("t:{}", c.step),
            "crash {crash_at}: stable key"
        );
    }
    let done_before = completed_steps(&at_crash);
    for c in &calls[calls_before..] {
        assert!(
            c.compensation || !done_before.contains(&c.step),
            "crash {crash_at}: completed step {} executed again",
            c.step
        );
    }
    if expected == State::Compensated {
        let undone = log.compensated_steps();
        let mut must: Vec<String> = completed_steps(&log)
            .into_iter()
            .filter(|s| s != "notify")
            .collect();
        must.reverse();
        assert_eq!(
            undone, must,
            "crash {crash_at}: each undone once, last first"
        );
        for step in &must {
            assert!(
                calls.iter().any(|c| c.compensation && &c.step == step),
                "crash {crash_at}: compensation of {step} lost"
            );
        }
    } else {
        assert!(calls.iter().all(|c| !c.compensation), "crash {crash_at}");
    }
    writes
}

async fn every_crash_point(scenario: Scenario) {
    let total = crash_and_resume(scenario, usize::MAX).await;
    assert!(total > 3);
    for n in 1..=total {
        crash_and_resume(scenario, n).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_crash_after_any_record_of_a_completing_saga_resumes_exactly() {
    every_crash_point(ALL_SUCCEED).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_after_any_record_of_a_compensating_saga_loses_no_compensation() {
    every_crash_point(THIRD_FAILS).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_after_any_record_past_the_pivot_keeps_going_forward() {
    every_crash_point(AFTER_PIVOT).await;
}

#[tokio::test(start_paused = true)]
async fn a_step_that_crashes_its_runner_every_time_is_given_up_on() {
    let script = Script::new();
    let store = memory();
    let saga_id = SagaId::new("poison").unwrap();
    // The first runner records the saga and dies right after starting step a's attempt; each
    // resuming runner does the same, until a's three attempts are spent.
    for round in 0..4 {
        let crashed = Arc::new(Notify::new());
        // Round 0 writes the creation first, then the start; round 3 must not crash.
        let crash_at = match round {
            0 => 2,
            3 => usize::MAX,
            _ => 1,
        };
        let crashing = Arc::new(CrashAfter::new(store.clone(), crash_at, crashed.clone()));
        let runner = SagaRunner::new(
            saga(vec![
                script.step("a", true).into(),
                script.step("b", true).into(),
            ]),
            crashing,
            config("r"),
        );
        let mut task = if round == 0 {
            let id = saga_id.clone();
            tokio::spawn(async move { runner.run(id, Order { amount: 1 }).await.map(|_| ()) })
        } else {
            tokio::time::advance(Duration::from_secs(31)).await;
            tokio::spawn(async move { runner.recover_once().await.map(|_| ()) })
        };
        tokio::select! {
            _ = crashed.notified() => task.abort(),
            done = &mut task => done.unwrap().unwrap(),
        }
    }
    let log = store.load(&saga_id).await.unwrap().unwrap();
    assert_eq!(log.state(), State::Compensated, "given up, nothing to undo");
    let a = &log.steps()[0];
    assert_eq!(a.attempts, 3);
    assert!(
        a.errors[0].error.contains("attempts exhausted"),
        "{:?}",
        a.errors
    );
    assert!(
        script.calls().is_empty(),
        "the crashes came before every call"
    );
}
