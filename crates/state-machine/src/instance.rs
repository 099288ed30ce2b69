//! The per-entity value: current state, context, history, version.

use std::borrow::Cow;
use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One record of an instance's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord<S> {
    /// The leaf state before.
    pub from: S,
    /// The leaf state after.
    pub to: S,
    /// The event's [`name`](crate::Event::name).
    pub event: Cow<'static, str>,
    /// When it happened (the `now` passed to `send`); the first time, when it repeated.
    pub at: DateTime<Utc>,
    /// How many more times it happened right after, folded into this record (0: once). Only
    /// self-transitions repeat, and only in a definition built with
    /// [`fold_self_transitions`](crate::DefinitionBuilder::fold_self_transitions). Absent from
    /// the JSON when 0, so records written before it existed read as 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repeats: u32,
    /// When the last folded repeat happened (`None`: it did not repeat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<DateTime<Utc>>,
}

impl<S> HistoryRecord<S> {
    /// How many transitions this record stands for (`repeats + 1`).
    pub fn count(&self) -> u64 {
        u64::from(self.repeats) + 1
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A running machine: a plain serde value, small enough to store per user.
///
/// It does not hold its definition: [`Definition::send`](crate::Definition::send) takes it by
/// `&mut`, and a [`Registry`](crate::Registry) finds the definition of a stored one by
/// [`definition`](Instance::definition) and [`definition_version`](Instance::definition_version).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance<S, C> {
    pub(crate) definition: String,
    pub(crate) definition_version: u32,
    pub(crate) state: S,
    pub(crate) context: C,
    pub(crate) history: VecDeque<HistoryRecord<S>>,
    pub(crate) entered_at: DateTime<Utc>,
    pub(crate) version: u64,
}

impl<S: Copy, C> Instance<S, C> {
    /// The definition's name.
    pub fn definition(&self) -> &str {
        &self.definition
    }

    /// The definition's version this instance follows.
    pub fn definition_version(&self) -> u32 {
        self.definition_version
    }

    /// The current leaf state.
    pub fn state(&self) -> S {
        self.state
    }

    /// The extended state (context).
    pub fn context(&self) -> &C {
        &self.context
    }

    /// The context, mutably: for data that does not go through a transition. Transitions should
    /// change it through actions, so the change is part of the machine.
    pub fn context_mut(&mut self) -> &mut C {
        &mut self.context
    }

    /// The most recent transitions, oldest first, at most the definition's history limit.
    pub fn history(&self) -> &VecDeque<HistoryRecord<S>> {
        &self.history
    }

    /// When the current leaf state was (re-)entered: the time of the last transition, or of
    /// creation. Timeouts count from here.
    pub fn entered_at(&self) -> DateTime<Utc> {
        self.entered_at
    }

    /// The stored version this value was loaded at (0: never saved). Stores compare it on save
    /// (optimistic concurrency); `send` does not change it.
    pub fn version(&self) -> u64 {
        self.version
    }
}
