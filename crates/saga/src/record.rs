//! What the saga log records: states, entries, leases.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, SagaId};

/// Where a saga is.
///
/// ```text
/// running ──every step done──▶ completed
///    │
///    └─a step failed for good (before any pivot)──▶ compensating ──all undone──▶ compensated
///    │                                                   │
///    └─a step after a pivot failed for good──┐           └─a compensation failed for good──┐
///                                            ▼                                             ▼
///                                          failed (parked) ◀───────────────────────────────┘
///                                            │  operator: retry ──▶ running | compensating
///                                            └─ operator: resolve ──▶ resolved
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Executing steps forward.
    Running,
    /// Every step succeeded.
    Completed,
    /// A step failed; completed steps are being undone, last first.
    Compensating,
    /// Every completed step with a compensation was undone.
    Compensated,
    /// Parked for an operator: a compensation failed for good, or a step after a pivot did.
    /// The log holds every error.
    Failed,
    /// An operator marked the failed saga as handled by hand.
    Resolved,
}

impl State {
    /// Every state.
    pub const ALL: [State; 6] = [
        State::Running,
        State::Completed,
        State::Compensating,
        State::Compensated,
        State::Failed,
        State::Resolved,
    ];

    /// The name stored and shown (`"running"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Completed => "completed",
            State::Compensating => "compensating",
            State::Compensated => "compensated",
            State::Failed => "failed",
            State::Resolved => "resolved",
        }
    }

    /// Whether a runner works on sagas in this state (running, compensating).
    pub fn is_active(self) -> bool {
        matches!(self, State::Running | State::Compensating)
    }

    /// Whether the saga is finished with no more work by anyone (completed, compensated,
    /// resolved). `failed` is not: it waits for an operator.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Completed | State::Compensated | State::Resolved
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for State {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::Corrupt(format!("unknown saga state {s:?}")))
    }
}

/// One record of the saga log. Each is written before the action that follows it, so the log
/// says exactly where a crashed saga was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Entry {
    /// A step's execute is about to run (attempt `attempt`, 1-based over the saga's life).
    StepStarted {
        /// The step.
        step: String,
        /// The attempt number.
        attempt: u32,
    },
    /// A step succeeded; `output` is what later steps and its compensation read.
    StepCompleted {
        /// The step.
        step: String,
        /// The step's output (JSON).
        output: serde_json::Value,
    },
    /// The step does not run for this saga's input ([`StepBuilder::only_if`](crate::StepBuilder::only_if)):
    /// its output is `null` and there is nothing to compensate.
    StepSkipped {
        /// The step.
        step: String,
    },
    /// A step's attempt failed.
    StepFailed {
        /// The step.
        step: String,
        /// The attempt number.
        attempt: u32,
        /// The error.
        error: String,
        /// Whether the error was retryable.
        retryable: bool,
        /// Whether the attempt counts against the retry policy (a failed half-open breaker
        /// probe does not: the downstream is still down, nothing is wrong with the request).
        spent: bool,
        /// Whether this failure ended the step (permanent, or retries exhausted).
        gave_up: bool,
    },
    /// The saga turns back: `failed_step` failed for good; compensations follow.
    Compensating {
        /// The step that failed.
        failed_step: String,
        /// Why.
        reason: String,
    },
    /// A compensation is about to run.
    CompensationStarted {
        /// The step being undone.
        step: String,
        /// The compensation attempt number.
        attempt: u32,
    },
    /// The step has no compensation: nothing to undo.
    CompensationSkipped {
        /// The step.
        step: String,
    },
    /// The step was undone.
    StepCompensated {
        /// The step.
        step: String,
    },
    /// A compensation attempt failed.
    CompensationFailed {
        /// The step being undone.
        step: String,
        /// The compensation attempt number.
        attempt: u32,
        /// The error.
        error: String,
        /// Whether the error was retryable.
        retryable: bool,
        /// Whether the attempt counts against the compensation policy.
        spent: bool,
        /// Whether this failure ended the compensation (the saga is parked).
        gave_up: bool,
    },
    /// Every step succeeded.
    Completed,
    /// Every compensation ran.
    Compensated,
    /// The saga is parked for an operator.
    Parked {
        /// Why.
        reason: String,
    },
    /// An operator sent a parked saga back to work; retry budgets start afresh.
    Retried {
        /// The state it resumes in (running after a pivot, else compensating).
        resume: State,
    },
    /// An operator marked a parked saga as handled by hand.
    Resolved {
        /// The operator's note.
        note: String,
    },
}

impl Entry {
    /// The saga's state after this entry, when the entry changes it.
    pub fn new_state(&self) -> Option<State> {
        match self {
            Entry::Compensating { .. } => Some(State::Compensating),
            Entry::Completed => Some(State::Completed),
            Entry::Compensated => Some(State::Compensated),
            Entry::Parked { .. } => Some(State::Failed),
            Entry::Retried { resume } => Some(*resume),
            Entry::Resolved { .. } => Some(State::Resolved),
            _ => None,
        }
    }
}

/// An entry as stored: its position in the log and when it was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// 1-based position in the saga's log.
    pub seq: u64,
    /// When it was written (the store's clock).
    pub at: DateTime<Utc>,
    /// The record.
    pub entry: Entry,
}

/// A runner's hold on a saga. Writes made with it succeed only while its `fence` is the
/// saga's current one: a runner whose lease expired and was re-claimed gets
/// [`Error::LeaseLost`] and must stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The saga.
    pub id: SagaId,
    /// The fencing token: grows by one on every claim.
    pub fence: i64,
    /// Who holds it.
    pub owner: String,
    /// When it lapses unless extended (every write and heartbeat extends it).
    pub expires_at: DateTime<Utc>,
}

/// A saga to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSaga {
    /// Its id.
    pub id: SagaId,
    /// The definition's name.
    pub name: String,
    /// The definition's version.
    pub version: u32,
    /// The input (JSON).
    pub input: serde_json::Value,
}

/// The result of [`SagaStore::create`](crate::SagaStore::create).
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The saga was created, `running`, and leased to the caller.
    New(Lease),
    /// A saga with this id already exists (nothing was written).
    Exists(SagaSummary),
}

/// A saga's row without its log: what listings show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaSummary {
    /// The id.
    pub id: SagaId,
    /// The definition's name.
    pub name: String,
    /// The definition's version.
    pub version: u32,
    /// The state.
    pub state: State,
    /// Who holds the lease, if anyone does.
    pub lease_owner: Option<String>,
    /// When the lease lapses.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The current fencing token.
    pub fence: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last written.
    pub updated_at: DateTime<Utc>,
}

/// Which sagas [`SagaStore::list`](crate::SagaStore::list) returns: newest update first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this state (`None`: all).
    pub state: Option<State>,
    /// Only this definition name.
    pub name: Option<String>,
    /// At most this many (capped at [`MAX_LIST`]).
    pub limit: usize,
}

/// The most sagas one listing returns.
pub const MAX_LIST: usize = 1_000;

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter {
            state: None,
            name: None,
            limit: 100,
        }
    }
}

impl ListFilter {
    /// Sagas in `state`.
    pub fn state(state: State) -> Self {
        ListFilter {
            state: Some(state),
            ..ListFilter::default()
        }
    }

    /// Only sagas of definition `name`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// At most `limit` (capped at [`MAX_LIST`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub(crate) fn capped_limit(&self) -> usize {
        self.limit.min(MAX_LIST)
    }
}
