//! Property tests over arbitrary definitions: the builder answers any input with a definition
//! or a typed error (never a panic), and a definition it accepts keeps every instance in a
//! declared leaf whatever events arrive.

use chrono::{TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use steadfast_state_machine::{Definition, DefinitionError, Edge, Error, Event};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Ev(u8);

impl Event for Ev {
    type Kind = u8;
    fn kind(&self) -> u8 {
        self.0
    }
    fn name(&self) -> &'static str {
        ["a", "b", "c", "d"][usize::from(self.0 % 4)]
    }
}

#[derive(Debug, Clone)]
struct Spec {
    states: Vec<(u8, Option<u8>)>,
    initial_children: Vec<(u8, u8)>,
    finals: Vec<u8>,
    edges: Vec<(u8, u8, u8, Option<bool>)>,
    afters: Vec<(u8, u64, u8)>,
}

/// Mostly well-formed definitions (acyclic parents, an initial child per compound state, a
/// spine of transitions that reaches every state), plus random extra transitions and timeouts,
/// and with probability 1/4 one corruption (unknown state, duplicate, missing initial child,
/// a transition out of a final state...), so both `Ok` and every kind of `Err` are exercised.
fn spec() -> impl Strategy<Value = Spec> {
    (2u8..8)
        .prop_flat_map(|n| {
            (
                Just(n),
                proptest::collection::vec(proptest::option::weighted(0.4, any::<u8>()), n as usize),
                proptest::collection::vec(
                    (0..n, 1u8..4, 0..n, proptest::option::of(any::<bool>())),
                    0..10,
                ),
                proptest::collection::vec((0..n, 0u64..100, 0u8..4), 0..3),
                any::<bool>(),
                proptest::option::weighted(0.25, (0u8..6, any::<u8>())),
            )
        })
        .prop_map(|(n, parents, extra, afters, last_final, corrupt)| {
            // State i's parent is an earlier state (acyclic); state 0 is top-level.
            let states: Vec<(u8, Option<u8>)> = (0..n)
                .map(|i| (i, parents[i as usize].filter(|_| i > 0).map(|p| p % i)))
                .collect();
            let mut initial_children = Vec::new();
            for p in 0..n {
                if let Some(&(c, _)) = states.iter().find(|(_, parent)| *parent == Some(p)) {
                    initial_children.push((p, c));
                }
            }
            // Spine: i-1 --kind 0--> i reaches every state.
            let mut edges: Vec<(u8, u8, u8, Option<bool>)> =
                (1..n).map(|i| (i - 1, 0, i, None)).collect();
            edges.extend(extra);
            let last = n - 1;
            let last_is_leaf = !states.iter().any(|(_, p)| *p == Some(last));
            let mut finals = Vec::new();
            if last_final && last_is_leaf {
                finals.push(last);
                edges.retain(|e| e.0 != last);
            }
            let mut afters: Vec<(u8, u64, u8)> = afters;
            afters.retain(|a| !finals.contains(&a.0));
            afters.dedup_by_key(|a| a.0);
            let mut spec = Spec {
                states,
                initial_children,
                finals,
                edges,
                afters,
            };
            if let Some((op, x)) = corrupt {
                let pick = x % n;
                match op {
                    0 => spec.edges.push((pick, 1, 99, None)),
                    1 => spec.states.push((pick, None)),
                    2 => {
                        spec.initial_children.pop();
                    }
                    3 => spec.finals.push(pick),
                    4 => spec.states.push((100 + pick, None)),
                    _ => spec.edges.push((pick, 0, pick, None)),
                }
            }
            spec
        })
}

fn build(spec: &Spec) -> Result<Definition<u8, Ev, u32>, DefinitionError> {
    let mut b = Definition::<u8, Ev, u32>::builder("arb", 1).history_limit(5);
    for &(s, parent) in &spec.states {
        b = match parent {
            Some(p) => b.child(p, s),
            None => b.state(s),
        };
    }
    for &(p, c) in &spec.initial_children {
        b = b.initial_child(p, c);
    }
    for &f in &spec.finals {
        b = b.final_state(f);
    }
    for &(from, kind, to, guard) in &spec.edges {
        let mut e = Edge::new(from, kind, to).action(|n: &mut u32, _: &Ev| *n += 1);
        if let Some(pass) = guard {
            e = e.guard("g", move |n: &u32, _: &Ev| (*n % 2 == 0) == pass);
        }
        b = b.edge(e);
    }
    for &(s, secs, kind) in &spec.afters {
        b = b.after(s, std::time::Duration::from_secs(secs), Ev(kind));
    }
    b.build()
}

proptest! {
    #[test]
    fn any_definition_builds_or_fails_typed_and_runs_without_panics(
        spec in spec(),
        events in proptest::collection::vec((0u8..4, 0i64..200), 0..40),
    ) {
        let Ok(def) = build(&spec) else {
            // A typed error is the whole expectation for a rejected definition.
            return Ok(());
        };
        let t0 = Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap();
        let mut now = t0;
        let mut inst = def.new_instance(0, now);
        prop_assert!(def.is_leaf(inst.state()));
        for (kind, dt) in events {
            now += TimeDelta::seconds(dt);
            if let Some(timeout) = def.due(&inst, now) {
                let _ = def.send(&mut inst, timeout, now);
            }
            let before = inst.clone();
            match def.send(&mut inst, Ev(kind), now) {
                Ok(t) => {
                    prop_assert_eq!(t.to, inst.state());
                    prop_assert_eq!(inst.entered_at(), now);
                }
                Err(Error::NoTransition { .. }) => prop_assert_eq!(&inst, &before),
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
            prop_assert!(def.is_leaf(inst.state()));
            prop_assert!(inst.history().len() <= 5);
            let mermaid = def.to_mermaid();
            prop_assert!(mermaid.starts_with("stateDiagram-v2\n"));
        }
    }
}
