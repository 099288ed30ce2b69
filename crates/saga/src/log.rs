//! A saga's whole log, and the views folded from it: per-step status for operators, progress
//! for the runner that resumes it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Entry, LogEntry, SagaSummary, State};

/// A saga as stored: its row, its input, and every entry of its log in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaLog {
    /// The row.
    pub summary: SagaSummary,
    /// The saga's input (JSON).
    pub input: serde_json::Value,
    /// Every entry, oldest first.
    pub entries: Vec<LogEntry>,
}

/// Where one step is, as the log tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Started, not finished (running now, or interrupted by a crash).
    Started,
    /// Failed at least once and will be retried.
    Retrying,
    /// Succeeded.
    Completed,
    /// Did not run: the saga's input did not ask for it.
    Skipped,
    /// Failed for good.
    Failed,
    /// Its compensation is under way (or being retried).
    Compensating,
    /// Undone.
    Compensated,
    /// Had no compensation, so nothing was undone.
    CompensationSkipped,
    /// Its compensation failed for good: the saga is parked on it.
    CompensationFailed,
}

/// One error of a step, kept for the operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepErrorView {
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// Whether it came from the compensation (else the execute).
    pub compensation: bool,
    /// The attempt number.
    pub attempt: u32,
    /// The error message.
    pub error: String,
    /// Whether it was retryable.
    pub retryable: bool,
}

/// One step as the operator sees it: status, output, attempts, errors and timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    /// The step's name.
    pub name: String,
    /// Its status.
    pub status: StepStatus,
    /// Its output, once completed.
    pub output: Option<serde_json::Value>,
    /// Execute attempts started.
    pub attempts: u32,
    /// Compensation attempts started.
    pub compensation_attempts: u32,
    /// Every error, in order.
    pub errors: Vec<StepErrorView>,
    /// First execute start.
    pub started_at: Option<DateTime<Utc>>,
    /// Completion.
    pub completed_at: Option<DateTime<Utc>>,
    /// Compensation done (or skipped).
    pub compensated_at: Option<DateTime<Utc>>,
}

impl SagaLog {
    /// The saga's state.
    pub fn state(&self) -> State {
        self.summary.state
    }

    /// The steps the log mentions, in the order they first appear (the definition's order).
    pub fn steps(&self) -> Vec<StepView> {
        let mut views: Vec<StepView> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for LogEntry { at, entry, .. } in &self.entries {
            let Some(name) = step_of(entry) else {
                continue;
            };
            let i = *index.entry(name.to_owned()).or_insert_with(|| {
                views.push(StepView {
                    name: name.to_owned(),
                    status: StepStatus::Started,
                    output: None,
                    attempts: 0,
                    compensation_attempts: 0,
                    errors: Vec::new(),
                    started_at: None,
                    completed_at: None,
                    compensated_at: None,
                });
                views.len() - 1
            });
            let v = &mut views[i];
            match entry {
                Entry::StepStarted { .. } => {
                    v.attempts += 1;
                    v.started_at.get_or_insert(*at);
                    v.status = StepStatus::Started;
                }
                Entry::StepCompleted { output, .. } => {
                    v.output = Some(output.clone());
                    v.completed_at = Some(*at);
                    v.status = StepStatus::Completed;
                }
                Entry::StepSkipped { .. } => {
                    v.output = Some(serde_json::Value::Null);
                    v.completed_at = Some(*at);
                    v.status = StepStatus::Skipped;
                }
                Entry::StepFailed {
                    attempt,
                    error,
                    retryable,
                    gave_up,
                    ..
                } => {
                    v.errors.push(StepErrorView {
                        at: *at,
                        compensation: false,
                        attempt: *attempt,
                        error: error.clone(),
                        retryable: *retryable,
                    });
                    v.status = if *gave_up {
                        StepStatus::Failed
                    } else {
                        StepStatus::Retrying
                    };
                }
                Entry::CompensationStarted { .. } => {
                    v.compensation_attempts += 1;
                    v.status = StepStatus::Compensating;
                }
                Entry::CompensationSkipped { .. } => {
                    v.compensated_at = Some(*at);
                    v.status = StepStatus::CompensationSkipped;
                }
                Entry::StepCompensated { .. } => {
                    v.compensated_at = Some(*at);
                    v.status = StepStatus::Compensated;
                }
                Entry::CompensationFailed {
                    attempt,
                    error,
                    retryable,
                    gave_up,
                    ..
                } => {
                    v.errors.push(StepErrorView {
                        at: *at,
                        compensation: true,
                        attempt: *attempt,
                        error: error.clone(),
                        retryable: *retryable,
                    });
                    v.status = if *gave_up {
                        StepStatus::CompensationFailed
                    } else {
                        StepStatus::Compensating
                    };
                }
                _ => {}
            }
        }
        views
    }

    /// Steps undone, in the order their compensations finished.
    pub fn compensated_steps(&self) -> Vec<&str> {
        self.entries
            .iter()
            .filter_map(|e| match &e.entry {
                Entry::StepCompensated { step } => Some(step.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The state an operator retry resumes in: compensating if the saga had turned back,
    /// else running (a step after a pivot failed).
    pub fn resume_state(&self) -> State {
        let turned_back = self
            .entries
            .iter()
            .any(|e| matches!(e.entry, Entry::Compensating { .. }));
        if turned_back {
            State::Compensating
        } else {
            State::Running
        }
    }
}

fn step_of(entry: &Entry) -> Option<&str> {
    match entry {
        Entry::StepStarted { step, .. }
        | Entry::StepCompleted { step, .. }
        | Entry::StepSkipped { step }
        | Entry::StepFailed { step, .. }
        | Entry::CompensationStarted { step, .. }
        | Entry::CompensationSkipped { step }
        | Entry::StepCompensated { step }
        | Entry::CompensationFailed { step, .. } => Some(step),
        _ => None,
    }
}

/// What the runner needs to know about one step to carry on.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepProgress {
    pub(crate) output: Option<serde_json::Value>,
    /// Execute starts over the saga's life (the next attempt's number is this + 1).
    pub(crate) starts: u32,
    /// Execute attempts spent in this round (since the last operator retry): every start,
    /// an attempt cut short by a crash included, less failures that spent nothing.
    pub(crate) spent: u32,
    pub(crate) first_start: Option<DateTime<Utc>>,
    /// Set when the step failed for good in this round.
    pub(crate) gave_up: Option<String>,
    pub(crate) comp_starts: u32,
    pub(crate) comp_spent: u32,
    pub(crate) comp_first_start: Option<DateTime<Utc>>,
    pub(crate) comp_gave_up: Option<String>,
    /// Compensated or skipped.
    pub(crate) undone: bool,
    /// Did not run for this input (`only_if`): not a pivot point, nothing to undo.
    pub(crate) skipped: bool,
}

/// The log folded for the runner.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    pub(crate) steps: HashMap<String, StepProgress>,
    /// The step whose failure turned the saga back.
    pub(crate) failed_step: Option<String>,
}

impl Progress {
    pub(crate) fn of(entries: &[LogEntry]) -> Progress {
        let mut p = Progress::default();
        for LogEntry { at, entry, .. } in entries {
            p.apply(*at, entry);
        }
        p
    }

    pub(crate) fn apply(&mut self, at: DateTime<Utc>, entry: &Entry) {
        if let Entry::Retried { .. } = entry {
            for s in self.steps.values_mut() {
                s.spent = 0;
                s.first_start = None;
                s.gave_up = None;
                s.comp_spent = 0;
                s.comp_first_start = None;
                s.comp_gave_up = None;
            }
            return;
        }
        if let Entry::Compensating { failed_step, .. } = entry {
            self.failed_step = Some(failed_step.clone());
            return;
        }
        let Some(name) = step_of(entry) else {
            return;
        };
        let s = self.steps.entry(name.to_owned()).or_default();
        match entry {
            Entry::StepStarted { .. } => {
                s.starts += 1;
                s.spent += 1;
                s.first_start.get_or_insert(at);
            }
            Entry::StepCompleted { output, .. } => s.output = Some(output.clone()),
            Entry::StepSkipped { .. } => {
                s.output = Some(serde_json::Value::Null);
                s.skipped = true;
                s.undone = true;
            }
            Entry::StepFailed {
                spent,
                gave_up,
                error,
                ..
            } => {
                if !spent {
                    s.spent = s.spent.saturating_sub(1);
                }
                if *gave_up {
                    s.gave_up = Some(error.clone());
                }
            }
            Entry::CompensationStarted { .. } => {
                s.comp_starts += 1;
                s.comp_spent += 1;
                s.comp_first_start.get_or_insert(at);
            }
            Entry::CompensationSkipped { .. } | Entry::StepCompensated { .. } => {
                s.undone = true;
            }
            Entry::CompensationFailed {
                spent,
                gave_up,
                error,
                ..
            } => {
                if !spent {
                    s.comp_spent = s.comp_spent.saturating_sub(1);
                }
                if *gave_up {
                    s.comp_gave_up = Some(error.clone());
                }
            }
            _ => {}
        }
    }

    pub(crate) fn step(&self, name: &str) -> StepProgress {
        self.steps.get(name).cloned().unwrap_or_default()
    }

    pub(crate) fn outputs(&self) -> HashMap<String, serde_json::Value> {
        self.steps
            .iter()
            .filter_map(|(k, s)| s.output.clone().map(|o| (k.clone(), o)))
            .collect()
    }
}
