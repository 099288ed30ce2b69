//! The runner on the memory store under tokio's paused clock: ordering, retry
//! classification, breakers, the context, operator actions, events, stale runners.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use parking_lot::Mutex;
use steadfast_circuit_breaker::{CircuitBreaker, Config as BreakerConfig};
use steadfast_saga::{
    Entry, Error, ListFilter, MemorySagaStore, Operator, RunOutcome, RunnerConfig, Saga, SagaEvent,
    SagaId, SagaRunner, Start, State, Step, StepContext, StepError, StepStatus, TokioClock,
};

fn id(s: &str) -> SagaId {
    SagaId::new(s).unwrap()
}

async fn run(runner: &SagaRunner<Order>, saga: &str) -> State {
    match runner.run(id(saga), Order { amount: 5 }).await.unwrap() {
        RunOutcome::Finished(state) => state,
        other => panic!("expected the saga to run, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_third_step_compensates_the_first_two_in_reverse() {
    let script = Script::new();
    script.exec("c", vec![permanent("card declined")]);
    let saga = saga(vec![
        script.step("a", true).into(),
        script.step("b", true).into(),
        script.step("c", true).into(),
    ]);
    let store = memory();
    let runner = SagaRunner::new(saga, store.clone(), config("r"));
    assert_eq!(run(&runner, "t-1").await, State::Compensated);
    assert_eq!(script.trace(), ["a", "b", "c", "~b", "~a"]);
    let log = store.load(&id("t-1")).await.unwrap().unwrap();
    assert_eq!(log.compensated_steps(), ["b", "a"]);
    let steps = log.steps();
    assert_eq!(steps[2].status, StepStatus::Failed);
    assert_eq!(steps[2].errors[0].error, "card declined");
    assert_eq!(steps[0].status, StepStatus::Compensated);
}

#[tokio::test(start_paused = true)]
async fn a_step_without_compensation_is_skipped() {
    let script = Script::new();
    script.exec("c", vec![permanent("no")]);
    let saga = saga(vec![
        script.step("a", true).into(),
        script.step("notify", false).into(),
        script.step("c", true).into(),
    ]);
    let store = memory();
    let runner = SagaRunner::new(saga, store.clone(), config("r"));
    assert_eq!(run(&runner, "t").await, State::Compensated);
    assert_eq!(script.trace(), ["a", "notify", "c", "~a"]);
    let log = store.load(&id("t")).await.unwrap().unwrap();
    assert!(log.entries.iter().any(|e| e.entry
        == Entry::CompensationSkipped {
            step: "notify".to_owned()
        }));
}

#[tokio::test(start_paused = true)]
async fn a_pivot_stops_compensation_and_forces_forward_recovery() {
    // After the pivot, a failing step is retried (under the after-pivot policy, 10 attempts)
    // instead of turning the saga back.
    let script = Script::new();
    script.exec(
        "settle",
        vec![
            retryable("down"),
            retryable("down"),
            retryable("down"),
            retryable("down"),
            Ok(()),
        ],
    );
    let saga = saga(vec![
        script.step("reserve", true).into(),
        script.step("payout", true).pivot().into(),
        script.step("settle", true).into(),
    ]);
    let runner = SagaRunner::new(saga, memory(), config("r"));
    assert_eq!(run(&runner, "t").await, State::Completed);
    let settles = script.trace().iter().filter(|s| *s == "settle").count();
    assert_eq!(settles, 5, "more attempts than the step's own policy (3)");
    assert!(script.calls().iter().all(|c| !c.compensation));
}

#[tokio::test(start_paused = true)]
async fn a_step_failing_for_good_after_the_pivot_parks_without_compensating() {
    let script = Script::new();
    script.exec("settle", vec![permanent("ledger refused")]);
    let saga = saga(vec![
        script.step("reserve", true).into(),
        script.step("payout", true).pivot().into(),
        script.step("settle", true).into(),
    ]);
    let store = memory();
    let runner = SagaRunner::new(saga, store.clone(), config("r"));
    assert_eq!(run(&runner, "t").await, State::Failed);
    assert_eq!(script.trace(), ["reserve", "payout", "settle"]);
    let parked = Operator::new(store)
        .list(&ListFilter::state(State::Failed))
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_pivot_compensates_the_steps_before_it() {
    let script = Script::new();
    script.exec("payout", vec![permanent("rejected")]);
    let saga = saga(vec![
        script.step("reserve", true).into(),
        script.step("payout", true).pivot().into(),
        script.step("settle", true).into(),
    ]);
    let runner = SagaRunner::new(saga, memory(), config("r"));
    assert_eq!(run(&runner, "t").await, State::Compensated);
    assert_eq!(script.trace(), ["reserve", "payout", "~reserve"]);
}

#[tokio::test(start_paused = true)]
async fn retryable_errors_are_retried_by_policy_and_permanent_ones_are_not() {
    let script = Script::new();
    script.exec("a", vec![retryable("503"), retryable("503"), Ok(())]);
    script.exec("b", vec![permanent("400")]);
    let saga = saga(vec![
        script.step("a", true).into(),
        script.step("b", true).into(),
    ]);
    let store = memory();
    let runner = SagaRunner::new(saga, store.clone(), config("r"));
    assert_eq!(run(&runner, "t").await, State::Compensated);
    assert_eq!(script.trace(), ["a", "a", "a", "b", "~a"]);
    let attempts: Vec<u32> = script.calls().iter().map(|c| c.attempt).collect();
    assert_eq!(attempts, [1, 2, 3, 1, 1]);
    let steps = store.load(&id("t")).await.unwrap().unwrap().steps();
    assert_eq!(steps[0].attempts, 3);
    assert_eq!(steps[0].errors.len(), 2);
    assert!(steps[0].errors.iter().all(|e| e.retryable));
    assert_eq!(steps[1].attempts, 1);
    assert!(!steps[1].errors[0].retryable);
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_fail_the_step_and_compensate() {
    let script = Script::new();
    script.exec("b", vec![retryable("timeout")]);
    let saga = saga(vec![
        script.step("a", true).into(),
        script.step("b", true).into(),
    ]);
    let store = memory();
    let runner = SagaRunner::new(saga, store.clone(), config("r"));
    assert_eq!(run(&runner, "t").await, State::Compensated);
    assert_eq!(script.trace(), ["a", "b", "b", "b", "~a"]);
    let log = store.load(&id("t")).await.unwrap().unwrap();
    let Some(Entry::Compensating { reason, .. }) = log
        .entries
        .iter()
        .map(|e| &e.entry)
        .find(|e| matches!(e, Entry::Compensating { .. }))
    else {
        panic!("the saga turned back");
    };
    assert!(
        reason.contains("retries exhausted after 3 attempts"),
        "{reason}"
    );
}

/// Records the tokio time of each call of one step.
fn timed_step(
    name: &str,
    results: Vec<Result<(), StepError>>,
    policy: steadfast_saga::RetryPolicy,
) -> (Step<Order>, Arc<Mutex<Vec<tokio::time::Instant>>>) {
    timed_step_with(name, results, policy, None)
}

fn timed_step_with(
    name: &str,
    results: Vec<Result<(), StepError>>,
    policy: steadfast_saga::RetryPolicy,
    breaker: Option<CircuitBreaker>,
) -> (Step<Order>, Arc<Mutex<Vec<tokio::time::Instant>>>) {
    let times = Arc::new(Mutex::new(Vec::new()));
    let results = Arc::new(Mutex::new(results));
    let t = times.clone();
    let step = Step::new(name, move |_ctx: StepContext<Order>| {
        t.lock().push(tokio::time::Instant::now());
        let next = {
            let mut r = results.lock();
            if r.len() > 1 {
                r.remove(0)
            } else {
                r[0].clone()
            }
        };
        async move { next }
    })
    .policy(policy);
    let step = match breaker {
        Some(b) => step.breaker(b),
        None => step,
    };
    (step.build(), times)
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_capped_by_the_policy() {
    let policy = steadfast_saga::RetryPolicy::builder()
        .constant(Duration::from_secs(1))
        .max_delay(Duration::from_secs(10))
        .max_attempts(3)
        .build()
        .unwrap();
    let (step, times) = timed_step(
        "a",
        vec![
            Err(StepError::retryable("429").retry_after(Duration::from_secs(7))),
            Err(StepError::retryable("429").retry_after(Duration::from_secs(3600))),
            Ok(()),
        ],
        policy,
    );
    let runner = SagaRunner::new(saga(vec![step]), memory(), config("r"));
    assert_eq!(run(&runner, "t").await, State::Completed);
    let t = times.lock().clone();
    assert_eq!(t[1] - t[0], Duration::from_secs(7), "the server's delay");
    assert_eq!(t[2] - t[1], Duration::from_secs(10), "capped at max_delay");
}

/// A breaker clock following tokio's (paused) time.
#[derive(Clone)]
struct TokioNanos(tokio::time::Instant);

impl steadfast_circuit_breaker::MonotonicClock for TokioNanos {
    fn now_nanos(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

fn breaker() -> CircuitBreaker {
    let config = BreakerConfig::builder()
        .count_window(2)
        .minimum_calls(2)
        .failure_rate_threshold(50.0)
        .open_duration(Duration::from_secs(30))
        .half_open_permits(1)
        .build()
        .unwrap();
    let b = CircuitBreaker::with_clock(config, TokioNanos(tokio::time::Instant::now()));
    for _ in 0..2 {
        b.try_acquire().unwrap().failure();
    }
    assert!(b.try_acquire().is_err(), "the breaker is open");
    b
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_a_wait_not_an_attempt() {
    let b = breaker();
    let (step, times) = timed_step_with("a", vec![Ok(())], fast(1), Some(b));
    let waits = Arc::new(Mutex::new(Vec::new()));
    let w = waits.clone();
    let config = RunnerConfig::builder()
        .clock(Arc::new(TokioClock::new()))
        .on_event(move |e| {
            if let SagaEvent::BreakerWait { wait, .. } = e {
                w.lock().push(*wait);
            }
        })
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let store = memory();
    let runner = SagaRunner::new(saga(vec![step]), store.clone(), config);
    assert_eq!(run(&runner, "t").await, State::Completed);
    assert_eq!(times.lock().len(), 1, "one attempt, after the wait");
    assert!(times.lock()[0] - start >= Duration::from_secs(30));
    assert!(!waits.lock().is_empty());
    let steps = store.load(&id("t")).await.unwrap().unwrap().steps();
    assert_eq!(steps[0].attempts, 1);
    assert!(steps[0].errors.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_horizon_bounds_waiting_on_a_breaker_that_stays_open() {
    let b = breaker();
    b.force_open();
    let horizon = steadfast_saga::RetryPolicy::builder()
        .max_attempts(3)
        .max_elapsed(Duration::from_secs(60))
        .build()
        .unwrap();
    let script = Script::new();
    let (step, times) = timed_step_with("call", vec![Ok(())], horizon, Some(b));
    let store = memory();
    let runner = SagaRunner::new(
        saga(vec![script.step("a", true).into(), step]),
        store.clone(),
        config("r"),
    );
    let start = tokio::time::Instant::now();
    assert_eq!(run(&runner, "t").await, State::Compensated);
    assert!(
        times.lock().is_empty(),
        "the breaker never let a call through"
    );
    assert!(start.elapsed() >= Duration::from_secs(60));
    assert_eq!(script.trace(), ["a", "~a"]);
    let log = store.load(&id("t")).await.unwrap().unwrap();
    assert!(log.steps()[1].errors[0].error.contains("horizon"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_half_open_probe_spends_no_attempt() {
    let b = breaker();
    let calls = Arc::new(Mutex::new(0u32));
    let c = calls.clone();
    // One attempt allowed: the first call (the probe) fails, the breaker opens again, the
    // next probe succeeds, and the step completes on its single spent attempt.
    let step: Step<Order> = Step::new("a", move |_ctx: StepContext<Order>| {
        let n = {
            let mut n = c.lock();
            *n += 1;
            *n
        };
        async move {
            if n == 1 {
                Err(StepError::retryable("still down"))
            } else {
                Ok(())
            }
        }
    })
    .policy(fast(1))
    .breaker(b)
    .build();
    let store = memory();
    let runner = SagaRunner::new(saga(vec![step]), store.clone(), config("r"));
    assert_eq!(run(&runner, "t").await, State::Completed);
    assert_eq!(*calls.lock(), 2);
    let log = store.load(&id("t")).await.unwrap().unwrap();
    assert!(log.entries.iter().any(|e| matches!(
        e.entry,
        Entry::StepFailed {
            spent: false,
            gave_up: false,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn steps_read_the_input_and_earlier_outputs_with_a_stable_key() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let saga = Saga::builder("transfer")
        .step(Step::new("reserve", |ctx: StepContext<Order>| async move {
            Ok::<_, StepError>(format!("res-{}", ctx.input().amount))
        }))
        .step(Step::new("payout", move |ctx: StepContext<Order>| {
            let s = s.clone();
            async move {
                let reservation: String = ctx.output("reserve")?;
                s.lock()
                    .push((reservation, ctx.idempotency_key().to_owned(), ctx.attempt()));
                if ctx.attempt() < 2 {
                    return Err(StepError::retryable("timeout"));
                }
                Ok(())
            }
        }))
        .build()
        .unwrap();
    let runner = SagaRunner::new(saga, memory(), config("r"));
    assert_eq!(
        runner.run(id("tx-9"), Order { amount: 42 }).await.unwrap(),
        RunOutcome::Finished(State::Completed)
    );
    assert_eq!(
        *seen.lock(),
        [
            ("res-42".to_owned(), "tx-9:payout".to_owned(), 1),
            ("res-42".to_owned(), "tx-9:payout".to_owned(), 2)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_start_does_not_run_the_saga_twice() {
    let script = Script::new();
    let saga = saga(vec![script.step("a", true).into()]);
    let store = memory();
    let runner = SagaRunner::new(saga, store.clone(), config("r"));
    assert_eq!(run(&runner, "m-1").await, State::Completed);
    match runner.run(id("m-1"), Order { amount: 5 }).await.unwrap() {
        RunOutcome::AlreadyExists(s) => assert_eq!(s.state, State::Completed),
        other => panic!("{other:?}"),
    }
    match runner.start(id("m-1"), Order { amount: 5 }).await.unwrap() {
        Start::AlreadyExists(_) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(script.trace(), ["a"]);
    let other = SagaRunner::new(
        Saga::builder("refund")
            .step(script.step("a", true))
            .build()
            .unwrap(),
        store,
        config("r"),
    );
    let err = other.run(id("m-1"), Order { amount: 5 }).await.unwrap_err();
    assert!(matches!(err, Error::IdTaken { .. }), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn start_returns_once_recorded_and_runs_on_a_task() {
    let script = Script::new();
    let runner = SagaRunner::new(
        saga(vec![
            script.step("a", true).into(),
            script.step("b", true).into(),
        ]),
        memory(),
        config("r"),
    );
    let Start::Started(handle) = runner.start(id("m"), Order { amount: 1 }).await.unwrap() else {
        panic!("a new saga starts");
    };
    assert!(
        runner.store().load(&id("m")).await.unwrap().is_some(),
        "durable before start returns"
    );
    assert_eq!(handle.await.unwrap().unwrap(), State::Completed);
    assert_eq!(script.trace(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn an_operator_retries_a_failed_compensation_or_resolves_it() {
    let script = Script::new();
    script.exec("b", vec![permanent("declined")]);
    script.comp("a", vec![permanent("refund endpoint gone")]);
    let store = memory();
    let runner = SagaRunner::new(
        saga(vec![
            script.step("a", true).into(),
            script.step("b", true).into(),
        ]),
        store.clone(),
        config("r"),
    );
    let ops = Operator::new(store.clone());
    for saga_id in ["t1", "t2"] {
        assert_eq!(run(&runner, saga_id).await, State::Failed);
    }
    let log = ops.inspect(&id("t1")).await.unwrap();
    let a = &log.steps()[0];
    assert_eq!(a.status, StepStatus::CompensationFailed);
    assert_eq!(a.errors[0].error, "refund endpoint gone");
    assert!(a.errors[0].compensation);
    assert_eq!(a.output.as_ref().unwrap()["key"], "t1:a");

    script.comp("a", vec![Ok(())]);
    assert_eq!(ops.retry(&id("t1")).await.unwrap(), State::Compensating);
    let err = ops.retry(&id("t1")).await.unwrap_err();
    assert!(matches!(err, Error::WrongState { .. }), "{err:?}");
    assert_eq!(runner.recover_once().await.unwrap(), 1);
    assert_eq!(
        ops.inspect(&id("t1")).await.unwrap().state(),
        State::Compensated
    );

    ops.resolve(&id("t2"), "refunded by hand").await.unwrap();
    assert_eq!(
        ops.inspect(&id("t2")).await.unwrap().state(),
        State::Resolved
    );
    assert!(ops.resolve(&id("nope"), "x").await.is_err());
}

#[tokio::test(start_paused = true)]
async fn events_report_steps_compensations_and_outcomes() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let config = RunnerConfig::builder()
        .clock(Arc::new(TokioClock::new()))
        .on_event(move |ev| e.lock().push(ev.clone()))
        .build()
        .unwrap();
    let script = Script::new();
    script.exec("b", vec![retryable("x"), permanent("no")]);
    let runner = SagaRunner::new(
        saga(vec![
            script.step("a", true).into(),
            script.step("b", true).into(),
        ]),
        memory(),
        config,
    );
    assert_eq!(run(&runner, "t").await, State::Compensated);
    let kinds: Vec<String> = events
        .lock()
        .iter()
        .map(|e| match e {
            SagaEvent::Started { .. } => "started".to_owned(),
            SagaEvent::StepSucceeded { step, .. } => format!("ok {step}"),
            SagaEvent::StepFailed { step, retrying, .. } => format!("fail {step} {retrying}"),
            SagaEvent::Compensated { step, .. } => format!("undone {step}"),
            SagaEvent::Finished { state, .. } => format!("finished {state}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "ok a",
            "fail b true",
            "fail b false",
            "undone a",
            "finished compensated"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_runner_loses_its_lease_and_stops() {
    // The store's clock is manual, so the lease can lapse while tokio time stands still.
    let clock = steadfast_saga::ManualClock::starting_now();
    let store: Arc<dyn steadfast_saga::SagaStore> =
        Arc::new(MemorySagaStore::with_clock(Arc::new(clock.clone())));
    let release = Arc::new(tokio::sync::Notify::new());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let make = |release: Arc<tokio::sync::Notify>, calls: Arc<Mutex<Vec<String>>>| {
        Saga::builder("slow")
            .step(Step::new("call", move |ctx: StepContext<Order>| {
                let release = release.clone();
                calls.lock().push(ctx.idempotency_key().to_owned());
                async move {
                    release.notified().await;
                    Ok::<_, StepError>(())
                }
            }))
            .build()
            .unwrap()
    };
    let a = SagaRunner::new(
        make(release.clone(), calls.clone()),
        store.clone(),
        RunnerConfig::builder().owner("a").build().unwrap(),
    );
    let task = tokio::spawn(async move { a.run(id("s"), Order { amount: 1 }).await });
    tokio::task::yield_now().await;
    assert_eq!(calls.lock().len(), 1, "a is inside the step");

    clock.advance(Duration::from_secs(31));
    let b = SagaRunner::new(
        make(release.clone(), calls.clone()),
        store.clone(),
        RunnerConfig::builder().owner("b").build().unwrap(),
    );
    let lease = b
        .store()
        .claim("slow", 1, "b", 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(lease.len(), 1, "a's lease lapsed");
    // a's next heartbeat finds the fence moved on: it stops and its call is dropped.
    tokio::time::advance(Duration::from_secs(11)).await;
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::LeaseLost(_)), "{err:?}");

    let resumed = tokio::spawn({
        let b = b.clone();
        let lease = lease[0].clone();
        async move { b.resume(lease).await }
    });
    tokio::task::yield_now().await;
    release.notify_waiters();
    assert_eq!(resumed.await.unwrap().unwrap(), State::Completed);
    assert_eq!(
        *calls.lock(),
        ["s:call", "s:call"],
        "re-run with the same key"
    );
}

#[tokio::test(start_paused = true)]
async fn the_recovery_loop_resumes_abandoned_sagas_and_shuts_down() {
    let script = Script::new();
    let store = memory();
    let make = || {
        saga(vec![
            script.step("a", true).into(),
            script.step("b", true).into(),
        ])
    };
    // A saga recorded but never driven: its runner died right after creating it.
    let created = store
        .create(
            steadfast_saga::NewSaga {
                id: id("orphan"),
                name: "order".to_owned(),
                version: 1,
                input: serde_json::json!({ "amount": 3 }),
            },
            "dead",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(matches!(created, steadfast_saga::Created::New(_)));
    let runner = SagaRunner::new(
        make(),
        store.clone(),
        RunnerConfig::builder()
            .clock(Arc::new(TokioClock::new()))
            .poll_interval(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let handle = runner.recovery().spawn();
    tokio::time::sleep(Duration::from_secs(40)).await;
    let report = handle.shutdown().await;
    assert_eq!(report.resumed, 1);
    assert_eq!(report.finished, 1);
    assert_eq!(
        store.load(&id("orphan")).await.unwrap().unwrap().state(),
        State::Completed
    );
    assert_eq!(script.trace(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_sagas_past_the_grace_and_gives_their_leases_back() {
    let stuck = Saga::builder("stuck")
        .step(Step::new("hang", |_ctx: StepContext<Order>| async {
            std::future::pending::<()>().await;
            Ok::<_, StepError>(())
        }))
        .build()
        .unwrap();
    let store = memory();
    store
        .create(
            steadfast_saga::NewSaga {
                id: id("s"),
                name: "stuck".to_owned(),
                version: 1,
                input: serde_json::json!({ "amount": 1 }),
            },
            "dead",
            Duration::ZERO,
        )
        .await
        .unwrap();
    let runner = SagaRunner::new(
        stuck,
        store.clone(),
        RunnerConfig::builder()
            .clock(Arc::new(TokioClock::new()))
            .shutdown_grace(Duration::from_secs(2))
            .build()
            .unwrap(),
    );
    let handle = runner.recovery().spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = handle.shutdown().await;
    assert_eq!(report.resumed, 1);
    assert_eq!(report.cancelled, 1);
    let again = store
        .claim("stuck", 1, "next", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        again.len(),
        1,
        "the lease was given back, not left to lapse"
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_the_input_does_not_ask_for_is_skipped_without_its_breaker_or_compensation() {
    // "b" runs only for large orders; its breaker is open. A small order skips it: no wait on
    // the breaker, no attempt, and when "c" fails, only "a" is undone.
    let script = Script::new();
    script.exec("c", vec![permanent("no")]);
    let open = breaker();
    let saga = saga(vec![
        script.step("a", true).into(),
        script
            .step("b", true)
            .breaker(open.clone())
            .only_if(|order: &Order| order.amount > 100)
            .into(),
        script.step("c", true).into(),
    ]);
    let store = memory();
    let runner = SagaRunner::new(saga, store.clone(), config("r"));
    let start = tokio::time::Instant::now();
    assert_eq!(run(&runner, "t").await, State::Compensated);
    assert_eq!(script.trace(), ["a", "c", "~a"]);
    assert!(
        tokio::time::Instant::now() - start < Duration::from_secs(30),
        "no wait on the open breaker of a skipped step"
    );
    assert!(
        open.try_acquire().is_err(),
        "the skipped step left its breaker open"
    );
    let log = store.load(&id("t")).await.unwrap().unwrap();
    let steps = log.steps();
    assert_eq!(steps[1].status, StepStatus::Skipped);
    assert_eq!(steps[1].attempts, 0);
    assert_eq!(steps[1].output, Some(serde_json::Value::Null));
    assert_eq!(log.compensated_steps(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn a_skipped_pivot_is_not_a_pivot_point() {
    // The pivot does not run for this input, so a later failure still turns the saga back.
    let script = Script::new();
    script.exec("c", vec![permanent("no")]);
    let saga = saga(vec![
        script.step("a", true).into(),
        script
            .step("pay", false)
            .pivot()
            .only_if(|order: &Order| order.amount > 100)
            .into(),
        script.step("c", true).into(),
    ]);
    let runner = SagaRunner::new(saga, memory(), config("r"));
    assert_eq!(run(&runner, "t").await, State::Compensated);
    assert_eq!(script.trace(), ["a", "c", "~a"]);
}
