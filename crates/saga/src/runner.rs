//! The runner: creates sagas and drives them forward or back, recording every step before the
//! next action.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use steadfast_circuit_breaker::OwnedPermit;
use steadfast_retry::RetryPolicy;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::log::Progress;
use crate::time::{now, since};
use crate::{
    Created, Entry, Error, Lease, NewSaga, RunnerConfig, Saga, SagaEvent, SagaId, SagaStore,
    SagaSummary, State, StepContext, StepError,
};

/// Runs sagas of one definition on a store; clones share everything.
///
/// [`run`](Self::run) creates a saga and drives it to the end inline; [`start`](Self::start)
/// creates it (durably) and drives it on a spawned task; the [`recovery`](Self::recovery) loop
/// resumes sagas whose runner died. Every transition is written to the store before the
/// action that follows it, so whichever runner picks a saga up carries on where the log says.
pub struct SagaRunner<I> {
    inner: Arc<Inner<I>>,
}

struct Inner<I> {
    saga: Saga<I>,
    store: Arc<dyn SagaStore>,
    config: RunnerConfig,
}

impl<I> Clone for SagaRunner<I> {
    fn clone(&self) -> Self {
        SagaRunner {
            inner: self.inner.clone(),
        }
    }
}

impl<I> fmt::Debug for SagaRunner<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaRunner")
            .field("saga", &self.inner.saga.name)
            .field("version", &self.inner.saga.version)
            .field("store", &self.inner.store)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// What [`SagaRunner::run`] ended with.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// The saga ran until it finished (`completed`, `compensated`) or was parked (`failed`).
    Finished(State),
    /// A saga with this id already existed: nothing was started (a redelivered request).
    AlreadyExists(SagaSummary),
}

/// What [`SagaRunner::start`] did.
#[derive(Debug)]
pub enum Start {
    /// The saga was recorded and is running on this task; its result is the state it ended
    /// in. Dropping the handle does not stop it.
    Started(JoinHandle<Result<State, Error>>),
    /// A saga with this id already existed: nothing was started.
    AlreadyExists(SagaSummary),
}

impl<I> SagaRunner<I>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A runner of `saga` on `store`.
    pub fn new(saga: Saga<I>, store: Arc<dyn SagaStore>, config: RunnerConfig) -> Self {
        SagaRunner {
            inner: Arc::new(Inner {
                saga,
                store,
                config,
            }),
        }
    }

    /// The definition.
    pub fn saga(&self) -> &Saga<I> {
        &self.inner.saga
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SagaStore> {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.inner.config
    }

    /// Creates saga `id` with `input` and drives it until it finishes or is parked.
    ///
    /// If `id` exists, nothing runs: [`RunOutcome::AlreadyExists`] (or [`Error::IdTaken`] when
    /// it belongs to another definition). An `Err` other than those means the saga stopped
    /// part-way ([`Error::StoreUnavailable`], [`Error::LeaseLost`]): it is in the log, and the
    /// recovery loop carries it on once its lease expires.
    pub async fn run(&self, id: SagaId, input: I) -> Result<RunOutcome, Error> {
        let input = Arc::new(input);
        match self.create(&id, &input).await? {
            Err(summary) => Ok(RunOutcome::AlreadyExists(summary)),
            Ok(lease) => self
                .drive_with(lease, Some(input))
                .instrument(self.run_span(&id, false))
                .await
                .map(RunOutcome::Finished),
        }
    }

    /// Creates saga `id` with `input` and returns once its creation is durable, driving it on
    /// a spawned task. Use it where a saga must not hold up the caller (a queue worker that
    /// acks its message once the saga is recorded): from then on, this process or the
    /// recovery loop of another carries it to the end.
    pub async fn start(&self, id: SagaId, input: I) -> Result<Start, Error> {
        let input = Arc::new(input);
        match self.create(&id, &input).await? {
            Err(summary) => Ok(Start::AlreadyExists(summary)),
            Ok(lease) => {
                let runner = self.clone();
                // Made here, so that it is a child of the caller's span (a request, a queue
                // message) though the saga runs on another task. The caller's span itself is
                // not entered there: its own duration stays its own.
                let span = self.run_span(&id, false);
                Ok(Start::Started(tokio::spawn(
                    async move { runner.drive_with(lease, Some(input)).await }.instrument(span),
                )))
            }
        }
    }

    /// Drives a saga this runner holds `lease` on (from [`SagaStore::claim`]) until it
    /// finishes or is parked; the recovery loop calls this.
    pub async fn resume(&self, lease: Lease) -> Result<State, Error> {
        let span = self.run_span(&lease.id, true);
        self.drive_with(lease, None).instrument(span).await
    }

    /// The span a saga is driven in (`saga.run`, a child of the current span): its step and
    /// compensation spans are its children. A span stays open while a child is, so a caller's
    /// span (a request's) is reported once the saga it started has finished.
    fn run_span(&self, id: &SagaId, resumed: bool) -> tracing::Span {
        let name = &self.inner.saga.name;
        let span = tracing::info_span!(
            "saga.run",
            otel.name = tracing::field::Empty,
            saga.name = %name,
            saga.id = %id,
            resumed,
        );
        if !span.is_disabled() {
            span.record("otel.name", format!("saga {name}"));
        }
        span
    }

    /// Claims sagas of this definition whose lease expired, up to the configured batch, and
    /// drives them one after the other; returns how many it resumed. The
    /// [`recovery`](Self::recovery) loop does this concurrently and on a timer; this is the
    /// one-shot form for tests and tools.
    pub async fn recover_once(&self) -> Result<usize, Error> {
        let leases = self.claim(self.inner.config.claim_batch).await?;
        let n = leases.len();
        for lease in leases {
            if let Err(e) = self.resume(lease).await {
                tracing::warn!(error = %e, "saga stopped during recovery");
            }
        }
        Ok(n)
    }

    pub(crate) async fn claim(&self, limit: usize) -> Result<Vec<Lease>, Error> {
        let c = &self.inner.config;
        self.inner
            .store
            .claim(
                &self.inner.saga.name,
                self.inner.saga.version,
                &c.owner,
                limit,
                c.lease,
            )
            .await
    }

    /// `Ok(lease)` when created, `Err(summary)` when it existed.
    async fn create(&self, id: &SagaId, input: &I) -> Result<Result<Lease, SagaSummary>, Error> {
        let saga = &self.inner.saga;
        let value = serde_json::to_value(input)
            .map_err(|e| Error::InvalidInput(format!("saga input does not serialise: {e}")))?;
        let new = NewSaga {
            id: id.clone(),
            name: saga.name.clone(),
            version: saga.version,
            input: value,
        };
        let c = &self.inner.config;
        match self.inner.store.create(new, &c.owner, c.lease).await? {
            Created::New(lease) => {
                c.emit(&SagaEvent::Started {
                    id: id.clone(),
                    saga: saga.name.clone(),
                });
                Ok(Ok(lease))
            }
            Created::Exists(summary) => {
                if summary.name != saga.name || summary.version != saga.version {
                    return Err(Error::IdTaken {
                        id: id.clone(),
                        name: summary.name,
                        version: summary.version,
                    });
                }
                Ok(Err(summary))
            }
        }
    }

    async fn drive_with(&self, lease: Lease, input: Option<Arc<I>>) -> Result<State, Error> {
        let log = self
            .inner
            .store
            .load(&lease.id)
            .await?
            .ok_or_else(|| Error::NotFound(lease.id.clone()))?;
        let mut drive = Drive {
            inner: &self.inner,
            lease,
            progress: Progress::of(&log.entries),
            state: log.state(),
        };
        let input = match input {
            Some(input) => input,
            None => match serde_json::from_value::<I>(log.input) {
                Ok(input) => {
                    self.inner.config.emit(&SagaEvent::Resumed {
                        id: drive.lease.id.clone(),
                        saga: self.inner.saga.name.clone(),
                        state: drive.state,
                    });
                    Arc::new(input)
                }
                Err(e) => {
                    let reason = format!("saga input does not decode: {e}");
                    return drive.park(reason).await;
                }
            },
        };
        let result = drive.run(input).await;
        if let Err(Error::LeaseLost(id)) = &result {
            self.inner
                .config
                .emit(&SagaEvent::LeaseLost { id: id.clone() });
        }
        result
    }
}

/// Which half of a step an attempt loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Execute,
    Compensate,
}

/// One saga being driven under one lease.
struct Drive<'a, I> {
    inner: &'a Inner<I>,
    lease: Lease,
    progress: Progress,
    state: State,
}

impl<I> Drive<'_, I>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn run(&mut self, input: Arc<I>) -> Result<State, Error> {
        loop {
            match self.state {
                State::Running => self.forward(&input).await?,
                State::Compensating => self.backward(&input).await?,
                done => return Ok(done),
            }
        }
    }

    /// Runs the remaining steps; on a failure for good turns back (or parks after a pivot).
    async fn forward(&mut self, input: &Arc<I>) -> Result<(), Error> {
        let saga = &self.inner.saga;
        let mut after_pivot = false;
        for i in 0..saga.steps.len() {
            let step = &saga.steps[i];
            let p = self.progress.step(&step.name);
            if p.output.is_some() {
                after_pivot |= step.pivot && !p.skipped;
                continue;
            }
            if !step.runs_for(input) {
                self.write(Entry::StepSkipped {
                    step: step.name.clone(),
                })
                .await?;
                continue;
            }
            let failure = match p.gave_up {
                // The process stopped between recording the failure and acting on it.
                Some(error) => error,
                None => {
                    let policy = if after_pivot {
                        &saga.after_pivot_policy
                    } else {
                        &step.policy
                    };
                    match self.attempts(i, Phase::Execute, policy, input).await? {
                        Ok(output) => {
                            self.write(Entry::StepCompleted {
                                step: step.name.clone(),
                                output,
                            })
                            .await?;
                            after_pivot |= step.pivot;
                            continue;
                        }
                        Err(error) => error,
                    }
                }
            };
            if after_pivot {
                let reason = format!("step {} failed after the pivot: {failure}", step.name);
                self.park(reason).await?;
            } else {
                self.write(Entry::Compensating {
                    failed_step: step.name.clone(),
                    reason: failure,
                })
                .await?;
            }
            return Ok(());
        }
        self.write(Entry::Completed).await?;
        self.finished();
        Ok(())
    }

    /// Undoes the completed steps, last first; parks if a compensation fails for good.
    async fn backward(&mut self, input: &Arc<I>) -> Result<(), Error> {
        let saga = &self.inner.saga;
        for i in (0..saga.steps.len()).rev() {
            let step = &saga.steps[i];
            let p = self.progress.step(&step.name);
            if p.output.is_none() || p.undone {
                continue;
            }
            if step.compensate.is_none() || step.pivot {
                self.write(Entry::CompensationSkipped {
                    step: step.name.clone(),
                })
                .await?;
                continue;
            }
            let failure = match p.comp_gave_up {
                Some(error) => error,
                None => {
                    match self
                        .attempts(i, Phase::Compensate, &step.compensation_policy, input)
                        .await?
                    {
                        Ok(_) => {
                            self.write(Entry::StepCompensated {
                                step: step.name.clone(),
                            })
                            .await?;
                            continue;
                        }
                        Err(error) => error,
                    }
                }
            };
            let reason = format!("compensation of step {} failed: {failure}", step.name);
            self.park(reason).await?;
            return Ok(());
        }
        self.write(Entry::Compensated).await?;
        self.finished();
        Ok(())
    }

    /// Attempts step `i`'s execute or compensation until it succeeds, fails for good, or the
    /// policy is spent. `Ok(Err(message))` is a failure for good, already recorded.
    async fn attempts(
        &mut self,
        i: usize,
        phase: Phase,
        policy: &RetryPolicy,
        input: &Arc<I>,
    ) -> Result<Result<serde_json::Value, String>, Error> {
        let inner = self.inner;
        let step = &inner.saga.steps[i];
        let config = &inner.config;
        // The horizon runs from the first attempt of this round, or, while an open breaker
        // has let none through yet, from when the step began waiting.
        let entered = now(&*config.clock);
        loop {
            let p = self.progress.step(&step.name);
            let (starts, first) = match phase {
                Phase::Execute => (p.starts, p.first_start),
                Phase::Compensate => (p.comp_starts, p.comp_first_start),
            };
            if let Some(limit) = policy.max_elapsed() {
                if since(first.unwrap_or(entered), now(&*config.clock)) >= limit {
                    let error = format!("retry horizon of {limit:?} passed");
                    self.write(failed(phase, &step.name, starts, &error, true, false, true))
                        .await?;
                    return Ok(Err(error));
                }
            }
            // Attempts cut short by crashes count: a step that kills its process every time
            // must stop being resumed at some point.
            let spent_now = match phase {
                Phase::Execute => p.spent,
                Phase::Compensate => p.comp_spent,
            };
            if spent_now > 0 && !policy.allows_another(spent_now) {
                let error = format!("attempts exhausted: {spent_now} made, the last cut short");
                self.write(failed(phase, &step.name, starts, &error, true, false, true))
                    .await?;
                return Ok(Err(error));
            }
            let permit = match &step.breaker {
                None => None,
                Some(breaker) => match breaker.try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(rejected) => {
                        let wait = rejected
                            .retry_after
                            .filter(|d| !d.is_zero())
                            .unwrap_or(config.breaker_wait);
                        config.emit(&SagaEvent::BreakerWait {
                            id: self.lease.id.clone(),
                            step: step.name.clone(),
                            wait,
                        });
                        self.guarded(tokio::time::sleep(wait)).await?;
                        continue;
                    }
                },
            };
            let attempt = starts + 1;
            self.write(match phase {
                Phase::Execute => Entry::StepStarted {
                    step: step.name.clone(),
                    attempt,
                },
                Phase::Compensate => Entry::CompensationStarted {
                    step: step.name.clone(),
                    attempt,
                },
            })
            .await?;
            let ctx = StepContext {
                saga_id: self.lease.id.clone(),
                step: Arc::from(step.name.as_str()),
                key: Arc::from(self.lease.id.step_key(&step.name)),
                attempt,
                input: input.clone(),
                outputs: Arc::new(self.progress.outputs()),
            };
            let started = Instant::now();
            let span = step_span(phase, &inner.saga.name, &self.lease.id, &step.name, attempt);
            let result = match phase {
                Phase::Execute => {
                    let call = span.in_scope(|| (step.execute)(ctx));
                    self.guarded(call.instrument(span.clone())).await?
                }
                Phase::Compensate => {
                    let output = p.output.clone().unwrap_or_default();
                    match &step.compensate {
                        Some(compensate) => {
                            let call = span.in_scope(|| compensate(ctx, output));
                            self.guarded(call.instrument(span.clone()))
                                .await?
                                .map(|()| serde_json::Value::Null)
                        }
                        None => Ok(serde_json::Value::Null),
                    }
                }
            };
            match &result {
                Ok(_) => span.record("outcome", "ok"),
                Err(e) if e.is_retryable() => span.record("outcome", "retryable_error"),
                Err(_) => span.record("outcome", "error"),
            };
            if result.is_err() {
                span.record("otel.status_code", "error");
            }
            let latency = started.elapsed();
            let error = match result {
                Ok(value) => {
                    settle(permit, None);
                    config.emit(&success_event(
                        phase,
                        &self.lease.id,
                        step,
                        attempt,
                        latency,
                    ));
                    return Ok(Ok(value));
                }
                Err(error) => error,
            };
            let probe = permit.as_ref().is_some_and(OwnedPermit::is_probe);
            settle(permit, Some(&error));
            // A failed half-open probe says the downstream is still down, not that this
            // attempt was wrong: like an open breaker, it waits without spending.
            let spent = !(probe && error.is_retryable());
            let spent_so_far = match phase {
                Phase::Execute => p.spent + 1,
                Phase::Compensate => p.comp_spent + 1,
            } - u32::from(!spent);
            let retrying = error.is_retryable() && (!spent || policy.allows_another(spent_so_far));
            let message = error.message().to_owned();
            self.write(failed(
                phase,
                &step.name,
                attempt,
                &message,
                error.is_retryable(),
                spent,
                !retrying,
            ))
            .await?;
            config.emit(&failure_event(
                phase,
                &self.lease.id,
                step,
                attempt,
                latency,
                retrying,
                &message,
            ));
            if !retrying {
                let why = if error.is_retryable() {
                    format!("{message} (retries exhausted after {spent_so_far} attempts)")
                } else {
                    message
                };
                return Ok(Err(why));
            }
            if spent {
                let delay = match error.server_delay() {
                    Some(asked) => asked.min(policy.max_delay()),
                    None => policy.delay(spent_so_far),
                };
                self.guarded(tokio::time::sleep(delay)).await?;
            }
        }
    }

    fn finished(&self) {
        self.inner.config.emit(&SagaEvent::Finished {
            id: self.lease.id.clone(),
            saga: self.inner.saga.name.clone(),
            state: self.state,
        });
    }
}

impl<I> Drive<'_, I> {
    async fn park(&mut self, reason: String) -> Result<State, Error> {
        self.write(Entry::Parked {
            reason: reason.clone(),
        })
        .await?;
        tracing::warn!(saga = %self.lease.id, %reason, "saga parked for an operator");
        self.inner.config.emit(&SagaEvent::Parked {
            id: self.lease.id.clone(),
            saga: self.inner.saga.name.clone(),
            reason,
        });
        Ok(State::Failed)
    }

    /// Records `entry` (fenced) before anything else happens, and folds it into the progress.
    async fn write(&mut self, entry: Entry) -> Result<(), Error> {
        let c = &self.inner.config;
        self.lease = self
            .inner
            .store
            .append(&self.lease, entry.clone(), c.lease)
            .await?;
        if let Some(state) = entry.new_state() {
            self.state = state;
        }
        self.progress.apply(now(&*c.clock), &entry);
        Ok(())
    }

    /// Awaits `fut` while extending the lease every heartbeat. A lost lease drops `fut` (the
    /// step is cut short; its new owner re-runs it with the same key) and returns
    /// [`Error::LeaseLost`]; an unavailable store only logs, since the next write is fenced.
    async fn guarded<T>(&mut self, fut: impl Future<Output = T>) -> Result<T, Error> {
        let c = &self.inner.config;
        let every = c.heartbeat();
        let mut beat = tokio::time::interval_at(Instant::now() + every, every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Ok(out),
                _ = beat.tick() => {
                    match self.inner.store.heartbeat(&self.lease, c.lease).await {
                        Ok(lease) => self.lease = lease,
                        Err(Error::LeaseLost(id)) => return Err(Error::LeaseLost(id)),
                        Err(e) => {
                            tracing::warn!(saga = %self.lease.id, error = %e, "saga heartbeat failed");
                        }
                    }
                }
            }
        }
    }
}

/// The span of one attempt at a step's execute (`saga.step`) or compensation
/// (`saga.compensate`): a child of the saga's `saga.run` span. `outcome` (`ok`,
/// `retryable_error`, `error`) is recorded when the attempt ends. Plain `tracing`: a service
/// exporting OpenTelemetry traces gets one span per attempt, named `<phase> <saga>.<step>`.
fn step_span(phase: Phase, saga: &str, id: &SagaId, step: &str, attempt: u32) -> tracing::Span {
    let verb = match phase {
        Phase::Execute => "execute",
        Phase::Compensate => "compensate",
    };
    let span = match phase {
        Phase::Execute => tracing::info_span!(
            "saga.step",
            otel.name = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            saga.name = saga,
            saga.id = %id,
            saga.step = step,
            saga.phase = verb,
            saga.attempt = attempt,
            outcome = tracing::field::Empty,
        ),
        Phase::Compensate => tracing::info_span!(
            "saga.compensate",
            otel.name = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            saga.name = saga,
            saga.id = %id,
            saga.step = step,
            saga.phase = verb,
            saga.attempt = attempt,
            outcome = tracing::field::Empty,
        ),
    };
    if !span.is_disabled() {
        span.record("otel.name", format!("{verb} {saga}.{step}"));
    }
    span
}

fn failed(
    phase: Phase,
    step: &str,
    attempt: u32,
    error: &str,
    retryable: bool,
    spent: bool,
    gave_up: bool,
) -> Entry {
    let (step, error) = (step.to_owned(), error.to_owned());
    match phase {
        Phase::Execute => Entry::StepFailed {
            step,
            attempt,
            error,
            retryable,
            spent,
            gave_up,
        },
        Phase::Compensate => Entry::CompensationFailed {
            step,
            attempt,
            error,
            retryable,
            spent,
            gave_up,
        },
    }
}

/// Reports the call's outcome to the breaker: a retryable error is a failure, a permanent one
/// says the downstream answered and counts neither way.
fn settle(permit: Option<OwnedPermit>, error: Option<&StepError>) {
    let Some(permit) = permit else {
        return;
    };
    match error {
        None => permit.success(),
        Some(e) if e.is_retryable() => permit.failure(),
        Some(_) => permit.ignore(),
    }
}

fn success_event<I>(
    phase: Phase,
    id: &SagaId,
    step: &crate::Step<I>,
    attempt: u32,
    latency: Duration,
) -> SagaEvent {
    let (id, step) = (id.clone(), step.name.clone());
    match phase {
        Phase::Execute => SagaEvent::StepSucceeded {
            id,
            step,
            attempt,
            latency,
        },
        Phase::Compensate => SagaEvent::Compensated {
            id,
            step,
            attempt,
            latency,
        },
    }
}

fn failure_event<I>(
    phase: Phase,
    id: &SagaId,
    step: &crate::Step<I>,
    attempt: u32,
    latency: Duration,
    retrying: bool,
    error: &str,
) -> SagaEvent {
    let (id, step, error) = (id.clone(), step.name.clone(), error.to_owned());
    match phase {
        Phase::Execute => SagaEvent::StepFailed {
            id,
            step,
            attempt,
            latency,
            retrying,
            error,
        },
        Phase::Compensate => SagaEvent::CompensationFailed {
            id,
            step,
            attempt,
            latency,
            retrying,
            error,
        },
    }
}
