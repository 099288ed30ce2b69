//! The retry loop on tokio's paused clock: the schedule is really slept, nothing real waits.
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use steadfast_retry::{Action, AttemptTimeout, Retry, RetryBudget, RetryPolicy, StopReason, retry};
use tokio::time::Instant;

fn policy(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .exponential(Duration::from_millis(100), 2.0)
        .max_delay(Duration::from_secs(1))
        .max_attempts(attempts)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn sleeps_exactly_the_schedule_between_attempts() {
    let p = policy(5);
    let start = Instant::now();
    let times = Mutex::new(Vec::new());
    let result: Result<(), _> = retry(&p, || {
        times.lock().unwrap().push(start.elapsed());
        async { Err::<(), _>("down") }
    })
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.attempts, 5);
    assert_eq!(err.reason, StopReason::AttemptsExhausted);
    assert_eq!(err.error, "down");
    assert_eq!(
        *times.lock().unwrap(),
        [0, 100, 300, 700, 1500].map(Duration::from_millis).to_vec()
    );
}

#[tokio::test(start_paused = true)]
async fn succeeds_without_further_attempts() {
    let calls = AtomicU32::new(0);
    let out = retry(&policy(5), || {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move { if n == 2 { Ok(n) } else { Err("busy") } }
    })
    .await
    .unwrap();
    assert_eq!(out, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn classifier_stops_on_permanent_errors() {
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let err = Retry::new(&policy(5))
        .classify(|e: &u16| {
            if *e >= 500 {
                Action::Retry
            } else {
                Action::Stop
            }
        })
        .run(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { Err::<(), u16>(if n == 0 { 503 } else { 400 }) }
        })
        .await
        .unwrap_err();
    assert_eq!(err.attempts, 2);
    assert_eq!(err.reason, StopReason::NotRetryable);
    assert_eq!(err.error, 400);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn retry_after_overrides_backoff_and_is_capped() {
    let start = Instant::now();
    let times = Mutex::new(Vec::new());
    let calls = AtomicU32::new(0);
    let _ = Retry::new(&policy(3))
        .classify(|e: &Duration| Action::RetryAfter(*e))
        .run(|| {
            times.lock().unwrap().push(start.elapsed());
            let n = calls.fetch_add(1, Ordering::SeqCst);
            // The server asks for 250 ms, then for an hour (capped to max_delay, 1 s).
            let wait = if n == 0 {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(3600)
            };
            async move { Err::<(), _>(wait) }
        })
        .await;
    assert_eq!(
        *times.lock().unwrap(),
        [0, 250, 1250].map(Duration::from_millis).to_vec()
    );
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_stops_before_overrunning() {
    let p = RetryPolicy::builder()
        .constant(Duration::from_millis(400))
        .max_attempts(100)
        .max_elapsed(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = retry(&p, || async { Err::<(), _>(()) }).await.unwrap_err();
    // Attempts at 0, 400, 800 ms; a fourth wait would end at 1200 ms > 1 s.
    assert_eq!(err.attempts, 3);
    assert_eq!(err.reason, StopReason::ElapsedExceeded);
}

#[tokio::test(start_paused = true)]
async fn hooks_see_every_retry() {
    let seen = Mutex::new(Vec::new());
    let _ = Retry::new(&policy(4))
        .on_retry(|ev| seen.lock().unwrap().push((ev.attempt, ev.delay, *ev.error)))
        .run(|| async { Err::<(), _>(7) })
        .await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (1, Duration::from_millis(100), 7),
            (2, Duration::from_millis(200), 7),
            (3, Duration::from_millis(400), 7),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn budget_refuses_retries_once_drained_and_refills_over_time() {
    let budget = RetryBudget::builder()
        .window(Duration::from_secs(10))
        .min_per_sec(0)
        .ratio_percent(100)
        .build()
        .unwrap();
    // One request earns one retry: the loop gets exactly one retry, then is refused.
    let err = Retry::new(&policy(10))
        .budget(&budget)
        .run(|| async { Err::<(), _>(()) })
        .await
        .unwrap_err();
    assert_eq!(err.attempts, 2);
    assert_eq!(err.reason, StopReason::BudgetExhausted);
    assert_eq!(budget.remaining(), 0);

    // Deposits in the window earn retries back...
    for _ in 0..3 {
        budget.deposit();
    }
    assert_eq!(budget.remaining(), 3);
    // ...and expire once the window has passed.
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(budget.remaining(), 0);
    assert!(!budget.withdraw());
}

#[tokio::test(start_paused = true)]
async fn budget_minimum_rate_allows_retries_without_traffic() {
    let budget = RetryBudget::builder()
        .window(Duration::from_secs(10))
        .min_per_sec(1)
        .ratio_percent(0)
        .build()
        .unwrap();
    assert_eq!(budget.remaining(), 10);
    for _ in 0..10 {
        assert!(budget.withdraw());
    }
    assert!(!budget.withdraw());
    // Withdrawals age out with their slot, restoring the reserve.
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(budget.remaining(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_is_shared_across_threads() {
    let budget = std::sync::Arc::new(
        RetryBudget::builder()
            .window(Duration::from_secs(60))
            .min_per_sec(0)
            .ratio_percent(10)
            .build()
            .unwrap(),
    );
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let b = budget.clone();
            tokio::spawn(async move {
                for _ in 0..250 {
                    b.deposit();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // 1000 requests at 10% = 100 retries; no deposit lost to a race.
    assert_eq!(budget.remaining(), 100);
}

#[test]
fn error_display_names_attempts_and_reason() {
    let err = steadfast_retry::RetryError {
        error: "boom",
        attempts: 3,
        reason: StopReason::AttemptsExhausted,
    };
    assert_eq!(
        err.to_string(),
        "gave up after 3 attempt(s) (attempts exhausted): boom"
    );
}

proptest::proptest! {
    #[test]
    fn attempts_never_exceed_the_limit(max in 1u32..20, succeed_at in 1u32..40) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let calls = AtomicU32::new(0);
        let result = rt.block_on(retry(&policy(max), || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { if n >= succeed_at { Ok(n) } else { Err(n) } }
        }));
        let made = calls.load(Ordering::SeqCst);
        proptest::prop_assert!(made <= max);
        match result {
            Ok(n) => proptest::prop_assert_eq!(n, succeed_at),
            Err(e) => {
                proptest::prop_assert_eq!(e.attempts, max);
                proptest::prop_assert!(succeed_at > max);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn result_predicate_retries_try_again_values() {
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let seen = Mutex::new(Vec::new());
    let value = Retry::<&str>::new(&policy(5))
        .on_result_retry(|attempt, delay| seen.lock().unwrap().push((attempt, delay)))
        .run_until(
            |status: &&str| *status == "pending",
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move { Ok(if n < 3 { "pending" } else { "done" }) }
            },
        )
        .await
        .unwrap();
    assert_eq!(value, "done");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (1, Duration::from_millis(100)),
            (2, Duration::from_millis(200))
        ]
    );
    assert_eq!(start.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn result_predicate_hands_back_the_last_value_when_attempts_run_out() {
    let calls = AtomicU32::new(0);
    let value = Retry::<&str>::new(&policy(3))
        .run_until(
            |n: &u32| *n < 100,
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move { Ok(n) }
            },
        )
        .await
        .unwrap();
    // Polly and resilience4j return the last outcome; no error is invented for a value.
    assert_eq!(value, 3);
    // Errors in between are still classified as before.
    let calls = AtomicU32::new(0);
    let err = Retry::new(&policy(5))
        .classify(|_: &&str| Action::Stop)
        .run_until(
            |n: &u32| *n == 1,
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move { if n == 1 { Ok(n) } else { Err("fatal") } }
            },
        )
        .await
        .unwrap_err();
    assert_eq!((err.attempts, err.reason), (2, StopReason::NotRetryable));
}

#[derive(Debug, PartialEq)]
enum CallError {
    Slow(AttemptTimeout),
    Refused,
}

impl From<AttemptTimeout> for CallError {
    fn from(t: AttemptTimeout) -> Self {
        CallError::Slow(t)
    }
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_cancels_a_slow_attempt_and_retries() {
    let start = Instant::now();
    let calls = AtomicU32::new(0);
    let seen = Mutex::new(Vec::new());
    let limit = Duration::from_millis(200);
    let value = Retry::new(&policy(5))
        .attempt_timeout(limit)
        // The classifier judges the operation's errors; a timeout is retried regardless.
        .classify(|_: &CallError| Action::Stop)
        .on_retry(|ev| seen.lock().unwrap().push(format!("{:?}", ev.error)))
        .run(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let work = if n < 3 { 10_000 } else { 10 };
                tokio::time::sleep(Duration::from_millis(work)).await;
                Ok::<_, CallError>(n)
            }
        })
        .await
        .unwrap();
    assert_eq!(value, 3);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            format!(
                "{:?}",
                CallError::Slow(AttemptTimeout { attempt: 1, limit })
            ),
            format!(
                "{:?}",
                CallError::Slow(AttemptTimeout { attempt: 2, limit })
            ),
        ]
    );
    // Two cancelled attempts (200 ms each), the waits (100 ms, 200 ms), the good one (10 ms).
    assert_eq!(start.elapsed(), Duration::from_millis(710));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_is_the_last_error_when_attempts_run_out() {
    let start = Instant::now();
    let limit = Duration::from_millis(300);
    let err = Retry::new(&policy(3))
        .attempt_timeout_with(limit, |t| format!("slow: {t}"))
        .run(|| async {
            std::future::pending::<()>().await;
            Ok::<(), String>(())
        })
        .await
        .unwrap_err();
    assert_eq!(err.attempts, 3);
    assert_eq!(err.reason, StopReason::AttemptsExhausted);
    assert_eq!(err.error, "slow: attempt 3 timed out after 300ms");
    assert_eq!(start.elapsed(), Duration::from_millis(3 * 300 + 100 + 200));

    // A fast failure is not a timeout: the classifier sees it.
    let err = Retry::new(&policy(3))
        .attempt_timeout(limit)
        .classify(|_: &CallError| Action::Stop)
        .run(|| async { Err::<(), _>(CallError::Refused) })
        .await
        .unwrap_err();
    assert_eq!((err.error, err.attempts), (CallError::Refused, 1));
}
