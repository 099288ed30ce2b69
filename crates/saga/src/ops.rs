//! The operator's view: list sagas by state, inspect one, send a parked one back to work, or
//! mark it resolved by hand.

use std::sync::Arc;

use crate::{Entry, Error, ListFilter, SagaId, SagaLog, SagaStore, SagaSummary, State};

/// Operator actions on a saga store, for an admin API or a console. Works on any definition:
/// it needs the store only.
///
/// ```
/// use std::sync::Arc;
/// use steadfast_saga::{ListFilter, MemorySagaStore, Operator, State};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), steadfast_saga::Error> {
/// let ops = Operator::new(Arc::new(MemorySagaStore::new()));
/// let parked = ops.list(&ListFilter::state(State::Failed)).await?;
/// assert!(parked.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Operator {
    store: Arc<dyn SagaStore>,
}

impl Operator {
    /// Operator actions on `store`.
    pub fn new(store: Arc<dyn SagaStore>) -> Self {
        Operator { store }
    }

    /// Sagas matching `filter` (e.g. [`ListFilter::state`]`(State::Failed)` for the parked
    /// ones), most recently written first.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<SagaSummary>, Error> {
        self.store.list(filter).await
    }

    /// One saga whole: row, input, log. [`SagaLog::steps`] gives each step's status, output,
    /// errors and timings.
    pub async fn inspect(&self, id: &SagaId) -> Result<SagaLog, Error> {
        self.store
            .load(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.clone()))
    }

    /// Sends a parked (`failed`) saga back to work, with fresh retry budgets: its failed
    /// compensation is tried again (or, when it was parked after a pivot, its failed forward
    /// step). The recovery loop of a runner of its definition picks it up at its next poll.
    /// Returns the state it resumes in.
    pub async fn retry(&self, id: &SagaId) -> Result<State, Error> {
        let log = self.inspect(id).await?;
        if log.state() != State::Failed {
            return Err(Error::WrongState {
                id: id.clone(),
                actual: log.state(),
                expected: State::Failed,
            });
        }
        let resume = log.resume_state();
        self.store
            .operator_append(id, Entry::Retried { resume }, State::Failed)
            .await?;
        Ok(resume)
    }

    /// Marks a parked (`failed`) saga as handled by hand (`resolved`), with a note for the log.
    pub async fn resolve(&self, id: &SagaId, note: impl Into<String>) -> Result<(), Error> {
        self.store
            .operator_append(id, Entry::Resolved { note: note.into() }, State::Failed)
            .await?;
        Ok(())
    }
}
