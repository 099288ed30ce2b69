//! The definition builder and its validation.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;

use super::{
    Action, DEFAULT_HISTORY_LIMIT, Definition, Guard, Hook, StateAction, StateNode, Transition,
    TransitionDef,
};
use crate::error::DefinitionError;
use crate::types::{Event, StateId};

/// One transition declaration: `from --kind [guard] / actions--> to`, for
/// [`DefinitionBuilder::edge`]. For a plain transition use [`DefinitionBuilder::transition`].
pub struct Edge<S, E: Event, C> {
    from: S,
    kind: E::Kind,
    to: S,
    guard: Option<(Cow<'static, str>, Guard<C, E>)>,
    actions: Vec<Action<C, E>>,
}

impl<S, E: Event, C> Edge<S, E, C> {
    /// `from --kind--> to`.
    pub fn new(from: S, kind: E::Kind, to: S) -> Self {
        Edge {
            from,
            kind,
            to,
            guard: None,
            actions: Vec::new(),
        }
    }

    /// Only enabled when `guard(context, event)` is true. `label` names it in diagrams.
    pub fn guard(
        mut self,
        label: impl Into<Cow<'static, str>>,
        guard: impl Fn(&C, &E) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.guard = Some((label.into(), Arc::new(guard)));
        self
    }

    /// Runs `action(context, event)` between the exits and the entries. Several run in order.
    pub fn action(mut self, action: impl Fn(&mut C, &E) + Send + Sync + 'static) -> Self {
        self.actions.push(Arc::new(action));
        self
    }
}

/// Builds a [`Definition`]; nothing is checked until [`build`](DefinitionBuilder::build), which
/// validates the whole and returns the first problem as a typed [`DefinitionError`].
///
/// Defaults: the initial state is the first top-level state declared; history keeps
/// [`DEFAULT_HISTORY_LIMIT`] records; an unhandled event is an error.
pub struct DefinitionBuilder<S, E: Event, C> {
    name: String,
    version: u32,
    states: Vec<(S, Option<S>)>,
    initial: Option<S>,
    initial_children: Vec<(S, S)>,
    finals: Vec<S>,
    entries: Vec<(S, StateAction<C>)>,
    exits: Vec<(S, StateAction<C>)>,
    afters: Vec<(S, Duration, E)>,
    edges: Vec<Edge<S, E, C>>,
    ignore_unhandled: bool,
    history_limit: usize,
    fold_self_transitions: bool,
    hook: Option<Hook<S>>,
}

impl<S: StateId, E: Event, C> DefinitionBuilder<S, E, C> {
    pub(super) fn new(name: String, version: u32) -> Self {
        DefinitionBuilder {
            name,
            version,
            states: Vec::new(),
            initial: None,
            initial_children: Vec::new(),
            finals: Vec::new(),
            entries: Vec::new(),
            exits: Vec::new(),
            afters: Vec::new(),
            edges: Vec::new(),
            ignore_unhandled: false,
            history_limit: DEFAULT_HISTORY_LIMIT,
            fold_self_transitions: false,
            hook: None,
        }
    }

    /// Declares a top-level state.
    pub fn state(mut self, state: S) -> Self {
        self.states.push((state, None));
        self
    }

    /// Declares `state` as a child of `parent` (which becomes a compound state and needs an
    /// [`initial_child`](Self::initial_child)).
    pub fn child(mut self, parent: S, state: S) -> Self {
        self.states.push((state, Some(parent)));
        self
    }

    /// The top-level initial state (default: the first top-level state declared).
    pub fn initial(mut self, state: S) -> Self {
        self.initial = Some(state);
        self
    }

    /// The child entered when a transition targets the compound state `parent`.
    pub fn initial_child(mut self, parent: S, child: S) -> Self {
        self.initial_children.push((parent, child));
        self
    }

    /// Marks a leaf state final: no event is handled there (not even by its ancestors).
    pub fn final_state(mut self, state: S) -> Self {
        self.finals.push(state);
        self
    }

    /// An action run when `state` is entered. Several run in order.
    pub fn on_entry(mut self, state: S, action: impl Fn(&mut C) + Send + Sync + 'static) -> Self {
        self.entries.push((state, Arc::new(action)));
        self
    }

    /// An action run when `state` is exited. Several run in order.
    pub fn on_exit(mut self, state: S, action: impl Fn(&mut C) + Send + Sync + 'static) -> Self {
        self.exits.push((state, Arc::new(action)));
        self
    }

    /// A timeout: while `state` is active, `event` falls due `after` the last transition (see
    /// [`Definition::due`]). At most one per state.
    pub fn after(mut self, state: S, after: Duration, event: E) -> Self {
        self.afters.push((state, after, event));
        self
    }

    /// A plain transition `from --kind--> to`, no guard, no action.
    pub fn transition(self, from: S, kind: E::Kind, to: S) -> Self {
        self.edge(Edge::new(from, kind, to))
    }

    /// A transition with guard and/or actions.
    pub fn edge(mut self, edge: Edge<S, E, C>) -> Self {
        self.edges.push(edge);
        self
    }

    /// Ignore events no transition handles (`send` returns an ignored [`Transition`]) instead of
    /// returning [`Error::NoTransition`](crate::Error::NoTransition). Default: false.
    pub fn ignore_unhandled(mut self, ignore: bool) -> Self {
        self.ignore_unhandled = ignore;
        self
    }

    /// How many history records an instance keeps (oldest dropped first). 0 keeps none.
    /// Default: [`DEFAULT_HISTORY_LIMIT`].
    pub fn history_limit(mut self, limit: usize) -> Self {
        self.history_limit = limit;
        self
    }

    /// Fold repeated self-transitions into one history record each. When on, a self-transition
    /// (`from == to`) whose event already has a record in the current run of self-transitions
    /// on that state (the records since the state was last entered from elsewhere) is counted
    /// on that record ([`HistoryRecord::repeats`], [`HistoryRecord::last_at`]) instead of
    /// appended. A chat that stays in `agent_active` for 50 messages then keeps two records
    /// (one per event kind), not 100, and the bounded history keeps how it got there.
    /// Default: false (every transition is its own record).
    ///
    /// [`HistoryRecord::repeats`]: crate::HistoryRecord::repeats
    /// [`HistoryRecord::last_at`]: crate::HistoryRecord::last_at
    pub fn fold_self_transitions(mut self, fold: bool) -> Self {
        self.fold_self_transitions = fold;
        self
    }

    /// Called after every transition with the definition's name (for logs and metrics; the
    /// crate logs nothing itself). Must be cheap: it runs inside `send`.
    pub fn on_transition(
        mut self,
        hook: impl Fn(&str, &Transition<S>) + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    /// [`DefinitionError::NoStates`], [`DefinitionError::DuplicateState`], [`DefinitionError::UnknownState`],
    /// [`DefinitionError::ParentCycle`], [`DefinitionError::MissingInitialChild`], [`DefinitionError::InitialNotChild`],
    /// [`DefinitionError::FinalStateNotFinal`], [`DefinitionError::AmbiguousTransition`],
    /// [`DefinitionError::UnreachableStates`], [`DefinitionError::InvalidSetting`].
    pub fn build(self) -> Result<Definition<S, E, C>, DefinitionError> {
        if self.states.is_empty() {
            return Err(DefinitionError::NoStates {
                definition: self.name,
            });
        }
        let mut index = HashMap::new();
        for (i, (s, _)) in self.states.iter().enumerate() {
            if index.insert(*s, i).is_some() {
                return Err(DefinitionError::DuplicateState {
                    state: format!("{s:?}"),
                });
            }
        }
        let lookup = |s: &S, used_by: &str| {
            index
                .get(s)
                .copied()
                .ok_or_else(|| DefinitionError::UnknownState {
                    state: format!("{s:?}"),
                    used_by: used_by.to_owned(),
                })
        };
        let mut nodes: Vec<StateNode<S, C, E>> = Vec::with_capacity(self.states.len());
        for (s, parent) in &self.states {
            let parent = match parent {
                Some(p) => Some(lookup(p, &format!("parent of {s:?}"))?),
                None => None,
            };
            nodes.push(StateNode {
                id: *s,
                parent,
                children: Vec::new(),
                initial: None,
                is_final: false,
                on_entry: Vec::new(),
                on_exit: Vec::new(),
                after: None,
            });
        }
        // Cycles: walking up from any state must end within n steps.
        for start in 0..nodes.len() {
            let mut s = nodes[start].parent;
            let mut steps = 0;
            while let Some(i) = s {
                steps += 1;
                if steps > nodes.len() {
                    return Err(DefinitionError::ParentCycle {
                        state: format!("{:?}", nodes[start].id),
                    });
                }
                s = nodes[i].parent;
            }
        }
        for i in 0..nodes.len() {
            if let Some(p) = nodes[i].parent {
                nodes[p].children.push(i);
            }
        }
        for (parent, child) in &self.initial_children {
            let p = lookup(parent, "initial_child")?;
            let c = lookup(child, "initial_child")?;
            if nodes[c].parent != Some(p) {
                return Err(DefinitionError::InitialNotChild {
                    parent: format!("{parent:?}"),
                    child: format!("{child:?}"),
                });
            }
            nodes[p].initial = Some(c);
        }
        for node in &nodes {
            if !node.children.is_empty() && node.initial.is_none() {
                return Err(DefinitionError::MissingInitialChild {
                    state: format!("{:?}", node.id),
                });
            }
        }
        let initial = match &self.initial {
            Some(s) => {
                let i = lookup(s, "initial")?;
                if nodes[i].parent.is_some() {
                    return Err(DefinitionError::InitialNotChild {
                        parent: "<root>".to_owned(),
                        child: format!("{s:?}"),
                    });
                }
                i
            }
            None => nodes
                .iter()
                .position(|n| n.parent.is_none())
                .ok_or_else(|| DefinitionError::ParentCycle {
                    state: format!("{:?}", nodes[0].id),
                })?,
        };
        for (s, action) in self.entries {
            let i = lookup(&s, "on_entry")?;
            nodes[i].on_entry.push(action);
        }
        for (s, action) in self.exits {
            let i = lookup(&s, "on_exit")?;
            nodes[i].on_exit.push(action);
        }
        for (s, after, event) in self.afters {
            let i = lookup(&s, "after")?;
            let delta =
                TimeDelta::from_std(after).map_err(|e| DefinitionError::InvalidSetting {
                    setting: "after",
                    reason: format!("{after:?} for {s:?}: {e}"),
                })?;
            if nodes[i].after.replace((delta, event)).is_some() {
                return Err(DefinitionError::InvalidSetting {
                    setting: "after",
                    reason: format!("{s:?} declares more than one timeout"),
                });
            }
        }
        for s in &self.finals {
            let i = lookup(s, "final_state")?;
            if !nodes[i].children.is_empty() || nodes[i].after.is_some() {
                return Err(DefinitionError::FinalStateNotFinal {
                    state: format!("{s:?}"),
                });
            }
            nodes[i].is_final = true;
        }

        let mut transitions = Vec::with_capacity(self.edges.len());
        let mut table: HashMap<(usize, E::Kind), Vec<usize>> = HashMap::new();
        for edge in self.edges {
            let used_by = format!("transition on {:?}", edge.kind);
            let source = lookup(&edge.from, &used_by)?;
            let target = lookup(&edge.to, &used_by)?;
            if nodes[source].is_final {
                return Err(DefinitionError::FinalStateNotFinal {
                    state: format!("{:?}", edge.from),
                });
            }
            let slot = table.entry((source, edge.kind)).or_default();
            // An earlier unguarded transition on the same (state, event) always wins, so this
            // one could never fire.
            if slot
                .iter()
                .any(|&t: &usize| transitions_guard_is_none(&transitions, t))
            {
                return Err(DefinitionError::AmbiguousTransition {
                    state: format!("{:?}", edge.from),
                    event: format!("{:?}", edge.kind),
                });
            }
            slot.push(transitions.len());
            transitions.push(TransitionDef {
                source,
                kind: edge.kind,
                target,
                guard: edge.guard,
                actions: edge.actions,
            });
        }

        // Reachability: the initial configuration, then every transition out of an active
        // state (a leaf or any of its ancestors) activates its target's configuration.
        let leaf_of = |mut i: usize| {
            while let Some(c) = nodes[i].initial {
                i = c;
            }
            i
        };
        let mut reached = vec![false; nodes.len()];
        let mut queue = VecDeque::new();
        let mut seen_leaf = HashSet::new();
        let start = leaf_of(initial);
        queue.push_back(start);
        seen_leaf.insert(start);
        let mut by_source: HashMap<usize, Vec<usize>> = HashMap::new();
        for t in &transitions {
            by_source.entry(t.source).or_default().push(t.target);
        }
        while let Some(leaf) = queue.pop_front() {
            let mut s = Some(leaf);
            while let Some(i) = s {
                reached[i] = true;
                for &target in by_source.get(&i).into_iter().flatten() {
                    // Mark the target and its ancestors (entered on the way down).
                    let mut a = Some(target);
                    while let Some(j) = a {
                        reached[j] = true;
                        a = nodes[j].parent;
                    }
                    let next = leaf_of(target);
                    if seen_leaf.insert(next) {
                        queue.push_back(next);
                    }
                }
                s = nodes[i].parent;
            }
        }
        let unreachable: Vec<String> = nodes
            .iter()
            .zip(&reached)
            .filter(|(_, r)| !**r)
            .map(|(n, _)| format!("{:?}", n.id))
            .collect();
        if !unreachable.is_empty() {
            return Err(DefinitionError::UnreachableStates {
                states: unreachable,
            });
        }

        Ok(Definition {
            name: self.name,
            version: self.version,
            states: nodes,
            index,
            initial,
            transitions,
            table,
            ignore_unhandled: self.ignore_unhandled,
            history_limit: self.history_limit,
            fold_self_transitions: self.fold_self_transitions,
            hook: self.hook,
        })
    }
}

fn transitions_guard_is_none<C, E: Event>(transitions: &[TransitionDef<C, E>], t: usize) -> bool {
    transitions[t].guard.is_none()
}
