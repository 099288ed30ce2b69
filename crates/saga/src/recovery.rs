//! The recovery loop: claims sagas whose lease expired (their runner died or gave them back)
//! and drives them on, with bounded concurrency and graceful shutdown.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::{Error, Lease, SagaRunner, State};

/// What a recovery loop did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Sagas claimed and resumed.
    pub resumed: u64,
    /// Of those, how many finished (`completed`, `compensated`).
    pub finished: u64,
    /// Of those, how many were parked (`failed`).
    pub parked: u64,
    /// Of those, how many stopped on an error (store down, lease lost): they are resumed
    /// again once their lease expires.
    pub stopped: u64,
    /// Sagas still running at the end of the shutdown grace: cancelled, leases given back.
    pub cancelled: u64,
}

impl RecoveryReport {
    fn account(&mut self, result: Result<Result<State, Error>, tokio::task::JoinError>) {
        match result {
            Ok(Ok(State::Failed)) => self.parked += 1,
            Ok(Ok(_)) => self.finished += 1,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "resumed saga stopped");
                self.stopped += 1;
            }
            Err(e) if e.is_cancelled() => self.cancelled += 1,
            Err(e) => {
                tracing::error!(error = %e, "resumed saga panicked");
                self.stopped += 1;
            }
        }
    }
}

/// The recovery loop of a [`SagaRunner`]: every poll interval (and at once while it finds
/// work), it claims sagas of the runner's definition whose lease expired and drives them, at
/// most `max_concurrent` at a time. Run one per process; several processes on one store
/// share the work (claims never hand one saga to two of them).
pub struct Recovery<I> {
    runner: SagaRunner<I>,
}

impl<I> fmt::Debug for Recovery<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovery")
            .field("runner", &self.runner)
            .finish()
    }
}

/// A recovery loop running on its own task; see [`Recovery::spawn`].
#[derive(Debug)]
pub struct RecoveryHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<RecoveryReport>,
}

impl RecoveryHandle {
    /// Stops claiming, lets running sagas finish within the shutdown grace, cancels the rest
    /// (giving their leases back), and returns the report.
    pub async fn shutdown(self) -> RecoveryReport {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

impl<I> SagaRunner<I>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// This runner's recovery loop.
    pub fn recovery(&self) -> Recovery<I> {
        Recovery {
            runner: self.clone(),
        }
    }
}

impl<I> Recovery<I>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Runs the loop on a spawned task until [`RecoveryHandle::shutdown`].
    pub fn spawn(self) -> RecoveryHandle {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            let _ = stopped.await;
        }));
        RecoveryHandle { stop, task }
    }

    /// Runs the loop until `shutdown` resolves, then shuts down gracefully (see
    /// [`RecoveryHandle::shutdown`]).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> RecoveryReport {
        let runner = self.runner;
        let config = runner.config().clone();
        let mut report = RecoveryReport::default();
        let mut tasks: JoinSet<Result<State, Error>> = JoinSet::new();
        let mut leases: HashMap<tokio::task::Id, Lease> = HashMap::new();
        tokio::pin!(shutdown);
        loop {
            let free = config.max_concurrent.saturating_sub(tasks.len());
            let want = free.min(config.claim_batch);
            let mut full_batch = false;
            if want > 0 {
                match runner.claim(want).await {
                    Ok(claimed) => {
                        full_batch = claimed.len() == want;
                        for lease in claimed {
                            report.resumed += 1;
                            let r = runner.clone();
                            let l = lease.clone();
                            let handle = tasks.spawn(async move { r.resume(l).await });
                            leases.insert(handle.id(), lease);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "saga recovery cannot claim"),
                }
            }
            let pause = if full_batch && tasks.len() < config.max_concurrent {
                std::time::Duration::ZERO
            } else {
                config.poll_interval
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(pause) => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    report.account(forget(&mut leases, done));
                }
            }
            while let Some(done) = tasks.try_join_next_with_id() {
                report.account(forget(&mut leases, done));
            }
        }
        let grace = tokio::time::sleep(config.shutdown_grace);
        tokio::pin!(grace);
        while !tasks.is_empty() {
            tokio::select! {
                _ = &mut grace => break,
                Some(done) = tasks.join_next_with_id() => {
                    report.account(forget(&mut leases, done));
                }
            }
        }
        tasks.abort_all();
        while let Some(done) = tasks.join_next_with_id().await {
            report.account(forget(&mut leases, done));
        }
        // Cancelled sagas: give their leases back so that another runner resumes them now
        // rather than a lease later. A saga that finished meanwhile refuses (not active).
        for lease in leases.into_values() {
            let _ = runner.store().release(&lease).await;
        }
        report
    }
}

/// Drops a finished task's lease from the set; a cancelled one keeps it, to be given back.
fn forget(
    leases: &mut HashMap<tokio::task::Id, Lease>,
    done: Result<(tokio::task::Id, Result<State, Error>), tokio::task::JoinError>,
) -> Result<Result<State, Error>, tokio::task::JoinError> {
    match done {
        Ok((id, result)) => {
            leases.remove(&id);
            Ok(result)
        }
        Err(e) => {
            if !e.is_cancelled() {
                leases.remove(&e.id());
            }
            Err(e)
        }
    }
}
