//! Property: over random step outcomes (and a random crash point, resumed by another
//! runner), a finished saga has compensated every executed compensable step before the
//! failure exactly once, in reverse order, and nothing else.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use steadfast_saga::{Entry, SagaId, SagaRunner, State, Step};
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    FlakyThenOk(usize),
    Permanent,
    Exhausted,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        3 => Just(Outcome::Ok),
        2 => (1..=2usize).prop_map(Outcome::FlakyThenOk),
        1 => Just(Outcome::Permanent),
        1 => Just(Outcome::Exhausted),
    ]
}

#[derive(Debug, Clone)]
struct StepPlan {
    compensable: bool,
    outcome: Outcome,
    /// Retryable failures of its compensation before it succeeds (its policy allows 5).
    comp_failures: usize,
}

fn step_plan() -> impl Strategy<Value = StepPlan> {
    (any::<bool>(), outcome(), 0..=3usize).prop_map(|(compensable, outcome, comp_failures)| {
        StepPlan {
            compensable,
            outcome,
            comp_failures,
        }
    })
}

fn name(i: usize) -> String {
    format!("s{i}")
}

fn script_for(plans: &[StepPlan]) -> Script {
    let script = Script::new();
    for (i, p) in plans.iter().enumerate() {
        let results = match p.outcome {
            Outcome::Ok => vec![Ok(())],
            Outcome::FlakyThenOk(k) => {
                let mut r = vec![retryable("flaky"); k];
                r.push(Ok(()));
                r
            }
            Outcome::Permanent => vec![permanent("refused")],
            Outcome::Exhausted => vec![retryable("down")],
        };
        script.exec(&name(i), results);
        let mut comp = vec![retryable("comp flaky"); p.comp_failures];
        comp.push(Ok(()));
        script.comp(&name(i), comp);
    }
    script
}

fn steps_for(script: &Script, plans: &[StepPlan]) -> Vec<Step<Order>> {
    plans
        .iter()
        .enumerate()
        .map(|(i, p)| script.step(&name(i), p.compensable).build())
        .collect()
}

fn check(plans: Vec<StepPlan>, crash_at: Option<usize>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let script = script_for(&plans);
        let store = memory();
        let crashed = Arc::new(Notify::new());
        let crashing = Arc::new(CrashAfter::new(
            store.clone(),
            crash_at.unwrap_or(usize::MAX),
            crashed.clone(),
        ));
        let a = SagaRunner::new(saga(steps_for(&script, &plans)), crashing, config("a"));
        let id = SagaId::new("p").unwrap();
        let mut task = {
            let id = id.clone();
            tokio::spawn(async move { a.run(id, Order { amount: 1 }).await })
        };
        let crashed_now = tokio::select! {
            _ = crashed.notified() => { task.abort(); true }
            done = &mut task => { done.unwrap().unwrap(); false }
        };
        tokio::time::advance(Duration::from_secs(31)).await;
        let b = SagaRunner::new(saga(steps_for(&script, &plans)), store.clone(), config("b"));
        while b.recover_once().await.unwrap() > 0 {}

        let Some(log) = store.load(&id).await.unwrap() else {
            prop_assert!(script.calls().is_empty());
            return Ok(());
        };
        let planned = plans
            .iter()
            .position(|p| matches!(p.outcome, Outcome::Permanent | Outcome::Exhausted));
        // The step whose failure turned the saga back, as the log says. Without a crash it is
        // the planned one. A crash may also fail a flaky step early: an attempt cut short by
        // the crash counts against its budget (it may have reached the downstream).
        let turned_back = log.entries.iter().find_map(|e| match &e.entry {
            Entry::Compensating { failed_step, .. } => {
                Some(failed_step[1..].parse::<usize>().unwrap())
            }
            _ => None,
        });
        if !crashed_now {
            prop_assert_eq!(turned_back, planned);
        } else if let Some(f) = turned_back {
            prop_assert!(planned.is_none_or(|p| f <= p));
        }
        match turned_back {
            None => {
                prop_assert_eq!(planned, None::<usize>);
                prop_assert_eq!(log.state(), State::Completed);
                prop_assert!(log.compensated_steps().is_empty());
                prop_assert!(script.calls().iter().all(|c| !c.compensation));
            }
            Some(f) => {
                prop_assert_eq!(log.state(), State::Compensated);
                let expected: Vec<String> = (0..f)
                    .rev()
                    .filter(|&i| plans[i].compensable)
                    .map(name)
                    .collect();
                prop_assert_eq!(log.compensated_steps(), expected.clone());
                // The compensation calls, first call per step, come in reverse order too.
                let mut firsts: Vec<String> = Vec::new();
                for c in script.calls().iter().filter(|c| c.compensation) {
                    if !firsts.contains(&c.step) {
                        firsts.push(c.step.clone());
                    }
                }
                prop_assert_eq!(&firsts, &expected);
                if !crashed_now {
                    // Without a crash, each compensation succeeded exactly once.
                    let calls = script.calls().iter().filter(|c| c.compensation).count();
                    let failures: usize = (0..f)
                        .filter(|&i| plans[i].compensable)
                        .map(|i| plans[i].comp_failures)
                        .sum();
                    prop_assert_eq!(calls, expected.len() + failures);
                }
                // Steps after the failure never ran.
                prop_assert!(
                    script
                        .calls()
                        .iter()
                        .all(|c| c.step[1..].parse::<usize>().unwrap() <= f)
                );
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn finished_sagas_compensate_every_executed_step_once_in_reverse(
        plans in prop::collection::vec(step_plan(), 1..=6),
        crash_at in prop::option::of(1..40usize),
    ) {
        check(plans, crash_at)?;
    }
}
