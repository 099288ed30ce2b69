//! Shared helpers: a call recorder, scripted steps, fast policies.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use steadfast_saga::{
    Created, Entry, Error, Lease, ListFilter, NewSaga, RetryPolicy, RunnerConfig, Saga, SagaId,
    SagaLog, SagaStore, SagaSummary, State, Step, StepContext, StepError, TokioClock,
};
use tokio::sync::Notify;

/// The saga input of the tests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub amount: u64,
}

/// One call a step made: which half, which step, with which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub compensation: bool,
    pub step: String,
    pub key: String,
    pub attempt: u32,
}

/// Per step: the results of successive calls; the last one repeats.
type Results = HashMap<String, Vec<Result<(), StepError>>>;

/// Records every call and scripts each step's results.
#[derive(Clone, Default)]
pub struct Script {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Per step: the results of successive execute calls; the last one repeats.
    exec: Arc<Mutex<Results>>,
    comp: Arc<Mutex<Results>>,
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn exec(&self, step: &str, results: Vec<Result<(), StepError>>) -> &Self {
        self.exec.lock().insert(step.to_owned(), results);
        self
    }

    pub fn comp(&self, step: &str, results: Vec<Result<(), StepError>>) -> &Self {
        self.comp.lock().insert(step.to_owned(), results);
        self
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    /// "a", "b", "~b" (compensation of b), in call order.
    pub fn trace(&self) -> Vec<String> {
        self.calls
            .lock()
            .iter()
            .map(|c| {
                if c.compensation {
                    format!("~{}", c.step)
                } else {
                    c.step.clone()
                }
            })
            .collect()
    }

    fn next(&self, table: &Mutex<Results>, call: Call) -> Result<(), StepError> {
        let step = call.step.clone();
        self.calls.lock().push(call);
        let mut table = table.lock();
        match table.get_mut(&step) {
            None => Ok(()),
            Some(results) if results.len() > 1 => results.remove(0),
            Some(results) => results.first().cloned().unwrap_or(Ok(())),
        }
    }

    /// A step named `name` whose output is `{"step": name, "key": key}`, scripted by `self`.
    pub fn step(&self, name: &str, compensable: bool) -> steadfast_saga::StepBuilder<Order, Out> {
        let me = self.clone();
        let step = Step::new(name, move |ctx: StepContext<Order>| {
            let me = me.clone();
            async move {
                let call = Call {
                    compensation: false,
                    step: ctx.step().to_owned(),
                    key: ctx.idempotency_key().to_owned(),
                    attempt: ctx.attempt(),
                };
                me.next(&me.exec, call)?;
                Ok(Out {
                    step: ctx.step().to_owned(),
                    key: ctx.idempotency_key().to_owned(),
                })
            }
        })
        .policy(fast(3));
        if !compensable {
            return step;
        }
        let me = self.clone();
        step.compensate(move |ctx: StepContext<Order>, out: Out| {
            let me = me.clone();
            async move {
                assert_eq!(
                    out.step,
                    ctx.step(),
                    "the compensation gets its own step's output"
                );
                let call = Call {
                    compensation: true,
                    step: ctx.step().to_owned(),
                    key: ctx.idempotency_key().to_owned(),
                    attempt: ctx.attempt(),
                };
                me.next(&me.comp, call)
            }
        })
        .compensation_policy(fast(5))
    }
}

/// A step's output in the tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Out {
    pub step: String,
    pub key: String,
}

/// `attempts` attempts, 1 s apart, no jitter.
pub fn fast(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .constant(Duration::from_secs(1))
        .max_delay(Duration::from_secs(10))
        .max_attempts(attempts)
        .build()
        .unwrap()
}

pub fn config(owner: &str) -> RunnerConfig {
    RunnerConfig::builder()
        .owner(owner)
        .clock(Arc::new(TokioClock::new()))
        .build()
        .unwrap()
}

pub fn saga(steps: Vec<steadfast_saga::Step<Order>>) -> Saga<Order> {
    let mut b = Saga::builder("order").after_pivot_policy(fast(10));
    for s in steps {
        b = b.step(s);
    }
    b.build().unwrap()
}

pub fn memory() -> Arc<dyn SagaStore> {
    Arc::new(steadfast_saga::MemorySagaStore::with_clock(Arc::new(
        TokioClock::new(),
    )))
}

pub fn retryable(m: &str) -> Result<(), StepError> {
    Err(StepError::retryable(m))
}

pub fn permanent(m: &str) -> Result<(), StepError> {
    Err(StepError::permanent(m))
}

/// Passes calls to the real store; after the `crash_at`-th durable write (create or append)
/// has been made, the writer hangs forever, as if the process died right there.
#[derive(Debug)]
pub struct CrashAfter {
    inner: Arc<dyn SagaStore>,
    pub writes: AtomicUsize,
    crash_at: usize,
    crashed: Arc<Notify>,
}

impl CrashAfter {
    pub fn new(inner: Arc<dyn SagaStore>, crash_at: usize, crashed: Arc<Notify>) -> Self {
        CrashAfter {
            inner,
            writes: AtomicUsize::new(0),
            crash_at,
            crashed,
        }
    }

    async fn wrote(&self) {
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.crash_at {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl SagaStore for CrashAfter {
    async fn create(&self, saga: NewSaga, owner: &str, lease: Duration) -> Result<Created, Error> {
        let out = self.inner.create(saga, owner, lease).await?;
        self.wrote().await;
        Ok(out)
    }
    async fn append(&self, lease: &Lease, entry: Entry, d: Duration) -> Result<Lease, Error> {
        let out = self.inner.append(lease, entry, d).await?;
        self.wrote().await;
        Ok(out)
    }
    async fn heartbeat(&self, lease: &Lease, d: Duration) -> Result<Lease, Error> {
        self.inner.heartbeat(lease, d).await
    }
    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        self.inner.release(lease).await
    }
    async fn claim(
        &self,
        name: &str,
        version: u32,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Lease>, Error> {
        self.inner.claim(name, version, owner, limit, lease).await
    }
    async fn load(&self, id: &SagaId) -> Result<Option<SagaLog>, Error> {
        self.inner.load(id).await
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<SagaSummary>, Error> {
        self.inner.list(filter).await
    }
    async fn operator_append(
        &self,
        id: &SagaId,
        entry: Entry,
        expected: State,
    ) -> Result<SagaSummary, Error> {
        self.inner.operator_append(id, entry, expected).await
    }
}
