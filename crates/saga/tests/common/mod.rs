//! Shared helpers: a call recorder, scripted steps, fast policies.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use steadfast_saga::{
    RetryPolicy, RunnerConfig, Saga, SagaStore, Step, StepContext, StepError, TokioClock,
};

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

/// Records every call and scripts each step's results.
#[derive(Clone, Default)]
pub struct Script {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Per step: the results of successive execute calls; the last one repeats.
    exec: Arc<Mutex<HashMap<String, Vec<Result<(), StepError>>>>>,
    comp: Arc<Mutex<HashMap<String, Vec<Result<(), StepError>>>>>,
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

    fn next(
        &self,
        table: &Mutex<HashMap<String, Vec<Result<(), StepError>>>>,
        call: Call,
    ) -> Result<(), StepError> {
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
