//! A machine's definition, built once and shared, and its run-time semantics (SCXML-style).
//!
//! Semantics, per event:
//! 1. **Selection**: starting at the active leaf and bubbling up through its ancestors, the
//!    transitions declared on that state for the event's kind are tried in declaration order;
//!    the first whose guard passes (or that has none) wins. None: the event is not handled
//!    (an [`Error::NoTransition`], or ignored if the definition says so), and the instance is
//!    left unchanged.
//! 2. **Domain**: the nearest state that is a proper ancestor of both the transition's source
//!    and its target (SCXML's transition domain for external transitions: a self-transition, or
//!    one into a descendant, exits and re-enters its source).
//! 3. **Exit** actions innermost-first, from the active leaf up to (not including) the domain;
//!    then the transition's **actions**; then **entry** actions outermost-first from below the
//!    domain down to the target, and on through initial children to a leaf.

mod builder;

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::Error;
use crate::instance::{HistoryRecord, Instance};
use crate::types::{Event, StateId};

pub use builder::{DefinitionBuilder, Edge};

pub(crate) type Guard<C, E> = Arc<dyn Fn(&C, &E) -> bool + Send + Sync>;
pub(crate) type Action<C, E> = Arc<dyn Fn(&mut C, &E) + Send + Sync>;
pub(crate) type StateAction<C> = Arc<dyn Fn(&mut C) + Send + Sync>;
pub(crate) type Hook<S> = Arc<dyn Fn(&str, &Transition<S>) + Send + Sync>;

/// Default bound on an instance's history.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;

/// The outcome of [`Definition::send`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition<S> {
    /// Leaf state before.
    pub from: S,
    /// Leaf state after (equal to `from` when ignored).
    pub to: S,
    /// The event's name.
    pub event: &'static str,
    /// The `now` passed in.
    pub at: DateTime<Utc>,
    /// True when no transition was enabled and the definition ignores unhandled events: nothing
    /// changed, nothing was recorded.
    pub ignored: bool,
}

pub(crate) struct StateNode<S, C, E> {
    pub(crate) id: S,
    pub(crate) parent: Option<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) initial: Option<usize>,
    pub(crate) is_final: bool,
    pub(crate) on_entry: Vec<StateAction<C>>,
    pub(crate) on_exit: Vec<StateAction<C>>,
    pub(crate) after: Option<(TimeDelta, E)>,
}

pub(crate) struct TransitionDef<C, E: Event> {
    pub(crate) source: usize,
    pub(crate) kind: E::Kind,
    pub(crate) target: usize,
    pub(crate) guard: Option<(Cow<'static, str>, Guard<C, E>)>,
    pub(crate) actions: Vec<Action<C, E>>,
}

/// A state machine's definition: states (with optional parents), transitions with guards and
/// actions, entry/exit actions, timeouts. Build it once with [`Definition::builder`], share it
/// in an `Arc`, and drive any number of [`Instance`]s with it.
pub struct Definition<S: StateId, E: Event, C> {
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) states: Vec<StateNode<S, C, E>>,
    pub(crate) index: HashMap<S, usize>,
    /// Top-level initial state.
    pub(crate) initial: usize,
    pub(crate) transitions: Vec<TransitionDef<C, E>>,
    /// (source state, event kind) -> transition indices in declaration order.
    pub(crate) table: HashMap<(usize, E::Kind), Vec<usize>>,
    pub(crate) ignore_unhandled: bool,
    pub(crate) history_limit: usize,
    pub(crate) fold_self_transitions: bool,
    pub(crate) hook: Option<Hook<S>>,
}

impl<S: StateId, E: Event, C> fmt::Debug for Definition<S, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Definition")
            .field("name", &self.name)
            .field("version", &self.version)
            .field(
                "states",
                &self.states.iter().map(|s| s.id).collect::<Vec<_>>(),
            )
            .field("transitions", &self.transitions.len())
            .field("ignore_unhandled", &self.ignore_unhandled)
            .field("history_limit", &self.history_limit)
            .field("fold_self_transitions", &self.fold_self_transitions)
            .finish()
    }
}

/// Counts `t` on its record when it repeats a self-transition of the current run (the
/// trailing records that are self-transitions of the same state); false when `t` must be
/// appended. The run holds at most one record per event, so the scan is short.
fn fold_repeat<S: StateId>(history: &mut VecDeque<HistoryRecord<S>>, t: &Transition<S>) -> bool {
    if t.from != t.to {
        return false;
    }
    for record in history.iter_mut().rev() {
        if record.from != t.from || record.to != t.to {
            return false;
        }
        if record.event == t.event {
            record.repeats = record.repeats.saturating_add(1);
            record.last_at = Some(t.at);
            return true;
        }
    }
    false
}

impl<S: StateId, E: Event, C> Definition<S, E, C> {
    /// Starts a builder for definition `name` at `version` (bump the version when a change makes
    /// stored instances invalid, and register a migration in the [`Registry`](crate::Registry)).
    pub fn builder(name: impl Into<String>, version: u32) -> DefinitionBuilder<S, E, C> {
        DefinitionBuilder::new(name.into(), version)
    }

    /// The definition's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The definition's version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The bound on each instance's history.
    pub fn history_limit(&self) -> usize {
        self.history_limit
    }

    /// Whether repeated self-transitions are folded into one history record (see
    /// [`DefinitionBuilder::fold_self_transitions`]).
    pub fn folds_self_transitions(&self) -> bool {
        self.fold_self_transitions
    }

    /// All declared states, in declaration order.
    pub fn states(&self) -> impl Iterator<Item = S> + '_ {
        self.states.iter().map(|s| s.id)
    }

    /// Whether `state` is declared and has no children (instances only ever rest in leaves).
    pub fn is_leaf(&self, state: S) -> bool {
        self.index
            .get(&state)
            .is_some_and(|&i| self.states[i].children.is_empty())
    }

    /// Whether `state` is declared final.
    pub fn is_final(&self, state: S) -> bool {
        self.index
            .get(&state)
            .is_some_and(|&i| self.states[i].is_final)
    }

    /// The parent of `state`, if it has one.
    pub fn parent(&self, state: S) -> Option<S> {
        let i = *self.index.get(&state)?;
        self.states[i].parent.map(|p| self.states[p].id)
    }

    /// A new instance in the initial leaf state, created at `now`. Entry actions of the initial
    /// states run, outermost first (SCXML's initial configuration).
    pub fn new_instance(&self, mut context: C, now: DateTime<Utc>) -> Instance<S, C> {
        let mut leaf = self.initial;
        for action in &self.states[leaf].on_entry {
            action(&mut context);
        }
        leaf = self.descend(leaf, &mut context);
        Instance {
            definition: self.name.clone(),
            definition_version: self.version,
            state: self.states[leaf].id,
            context,
            history: Default::default(),
            entered_at: now,
            version: 0,
        }
    }

    /// Sends `event` at time `now`. On success the instance is in the new leaf state, its
    /// context changed by the exit / transition / entry actions, and a history record appended
    /// (the oldest dropped beyond the limit). With no enabled transition: an
    /// [`Error::NoTransition`] (or an ignored [`Transition`] if the definition ignores unhandled
    /// events), and the instance is unchanged.
    pub fn send(
        &self,
        instance: &mut Instance<S, C>,
        event: E,
        now: DateTime<Utc>,
    ) -> Result<Transition<S>, Error> {
        self.check(instance)?;
        let leaf = self.leaf_index(instance)?;
        let Some(t) = self.select(leaf, &instance.context, &event) else {
            if self.ignore_unhandled {
                return Ok(Transition {
                    from: instance.state,
                    to: instance.state,
                    event: event.name(),
                    at: now,
                    ignored: true,
                });
            }
            return Err(Error::NoTransition {
                state: format!("{:?}", instance.state),
                event: event.name().to_owned(),
            });
        };
        let t = &self.transitions[t];
        let domain = self.domain(t.source, t.target);
        let ctx = &mut instance.context;

        // Exit: innermost first, up to (not including) the domain.
        let mut s = Some(leaf);
        while s != domain {
            let Some(i) = s else { break };
            for action in &self.states[i].on_exit {
                action(ctx);
            }
            s = self.states[i].parent;
        }
        for action in &t.actions {
            action(ctx, &event);
        }
        // Entry: outermost first, from below the domain down to the target, then initial children.
        let mut path = Vec::new();
        let mut s = Some(t.target);
        while s != domain {
            let Some(i) = s else { break };
            path.push(i);
            s = self.states[i].parent;
        }
        for &i in path.iter().rev() {
            for action in &self.states[i].on_entry {
                action(ctx);
            }
        }
        let new_leaf = self.descend(t.target, ctx);

        let transition = Transition {
            from: instance.state,
            to: self.states[new_leaf].id,
            event: event.name(),
            at: now,
            ignored: false,
        };
        instance.state = transition.to;
        instance.entered_at = now;
        if self.history_limit > 0 {
            let folded =
                self.fold_self_transitions && fold_repeat(&mut instance.history, &transition);
            if !folded {
                instance.history.push_back(HistoryRecord {
                    from: transition.from,
                    to: transition.to,
                    event: Cow::Borrowed(transition.event),
                    at: now,
                    repeats: 0,
                    last_at: None,
                });
            }
            // Also trims a history stored under a larger limit, on its next transition.
            while instance.history.len() > self.history_limit {
                instance.history.pop_front();
            }
        }
        if let Some(hook) = &self.hook {
            hook(&self.name, &transition);
        }
        Ok(transition)
    }

    /// Whether `event` would be handled in the instance's current state (a guard-passing
    /// transition exists), without changing anything.
    pub fn can_send(&self, instance: &Instance<S, C>, event: &E) -> bool {
        self.check(instance).is_ok()
            && self
                .leaf_index(instance)
                .is_ok_and(|leaf| self.select(leaf, &instance.context, event).is_some())
    }

    /// When the earliest timeout of the active states falls due (`entered_at + after`), if any
    /// active state (the leaf or an ancestor) declares one. Stores index instances by it.
    pub fn due_at(&self, instance: &Instance<S, C>) -> Option<DateTime<Utc>> {
        self.active_timeout(instance).map(|(at, _)| at)
    }

    /// The timeout event to send if a timeout of the active states is due at `now`
    /// (`now >= entered_at + after`), else `None`.
    pub fn due(&self, instance: &Instance<S, C>, now: DateTime<Utc>) -> Option<E> {
        self.active_timeout(instance)
            .filter(|(at, _)| *at <= now)
            .map(|(_, e)| e.clone())
    }

    fn active_timeout(&self, instance: &Instance<S, C>) -> Option<(DateTime<Utc>, &E)> {
        let mut s = self.index.get(&instance.state).copied();
        let mut best: Option<(DateTime<Utc>, &E)> = None;
        while let Some(i) = s {
            if let Some((after, event)) = &self.states[i].after {
                let at = instance
                    .entered_at
                    .checked_add_signed(*after)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, event));
                }
            }
            s = self.states[i].parent;
        }
        best
    }

    fn check(&self, instance: &Instance<S, C>) -> Result<(), Error> {
        if instance.definition != self.name || instance.definition_version != self.version {
            return Err(Error::DefinitionMismatch {
                expected: self.name.clone(),
                expected_version: self.version,
                found: instance.definition.clone(),
                found_version: instance.definition_version,
            });
        }
        Ok(())
    }

    fn leaf_index(&self, instance: &Instance<S, C>) -> Result<usize, Error> {
        match self.index.get(&instance.state) {
            Some(&i) if self.states[i].children.is_empty() => Ok(i),
            _ => Err(Error::InvalidInstanceState {
                definition: self.name.clone(),
                state: format!("{:?}", instance.state),
            }),
        }
    }

    /// The first enabled transition, bubbling from the leaf up.
    fn select(&self, leaf: usize, context: &C, event: &E) -> Option<usize> {
        let kind = event.kind();
        let mut s = Some(leaf);
        while let Some(i) = s {
            if self.states[i].is_final {
                return None;
            }
            if let Some(candidates) = self.table.get(&(i, kind)) {
                for &t in candidates {
                    let enabled = match &self.transitions[t].guard {
                        Some((_, guard)) => guard(context, event),
                        None => true,
                    };
                    if enabled {
                        return Some(t);
                    }
                }
            }
            s = self.states[i].parent;
        }
        None
    }

    /// Nearest proper ancestor of `source` that is also a proper ancestor of `target`
    /// (`None`: the root).
    fn domain(&self, source: usize, target: usize) -> Option<usize> {
        let mut a = self.states[source].parent;
        while let Some(i) = a {
            if self.is_proper_ancestor(i, target) {
                return Some(i);
            }
            a = self.states[i].parent;
        }
        None
    }

    fn is_proper_ancestor(&self, ancestor: usize, of: usize) -> bool {
        let mut s = self.states[of].parent;
        while let Some(i) = s {
            if i == ancestor {
                return true;
            }
            s = self.states[i].parent;
        }
        false
    }

    /// From `state` (already entered) through initial children to a leaf, running entries.
    fn descend(&self, mut state: usize, ctx: &mut C) -> usize {
        while let Some(child) = self.states[state].initial {
            for action in &self.states[child].on_entry {
                action(ctx);
            }
            state = child;
        }
        state
    }
}
