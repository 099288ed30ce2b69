//! Definition semantics: SCXML entry/exit order, guards, validation, timeouts, history,
//! registry and migrations, Mermaid.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use steadfast_state_machine::{Definition, DefinitionError, Edge, Error, Event, Registry};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum S {
    Off,
    P,
    P1,
    P2,
    Q,
    Q1,
    Q11,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ev {
    Go,
    Next,
    Back,
    Jump,
    Up,
    Finish,
    Tick,
    Num(i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum K {
    Go,
    Next,
    Back,
    Jump,
    Up,
    Finish,
    Tick,
    Num,
}

impl Event for Ev {
    type Kind = K;
    fn kind(&self) -> K {
        match self {
            Ev::Go => K::Go,
            Ev::Next => K::Next,
            Ev::Back => K::Back,
            Ev::Jump => K::Jump,
            Ev::Up => K::Up,
            Ev::Finish => K::Finish,
            Ev::Tick => K::Tick,
            Ev::Num(_) => K::Num,
        }
    }
    fn name(&self) -> &'static str {
        match self {
            Ev::Go => "go",
            Ev::Next => "next",
            Ev::Back => "back",
            Ev::Jump => "jump",
            Ev::Up => "up",
            Ev::Finish => "finish",
            Ev::Tick => "tick",
            Ev::Num(_) => "num",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Log(Vec<String>);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

/// Off ; P { P1, P2 } ; Q { Q1 { Q11 } } ; Done(final). Every state logs entry and exit.
fn logged() -> Definition<S, Ev, Log> {
    let mut b = Definition::builder("logged", 1)
        .state(S::Off)
        .state(S::P)
        .child(S::P, S::P1)
        .child(S::P, S::P2)
        .initial_child(S::P, S::P1)
        .state(S::Q)
        .child(S::Q, S::Q1)
        .child(S::Q1, S::Q11)
        .initial_child(S::Q, S::Q1)
        .initial_child(S::Q1, S::Q11)
        .state(S::Done)
        .final_state(S::Done);
    for s in [S::Off, S::P, S::P1, S::P2, S::Q, S::Q1, S::Q11, S::Done] {
        b = b
            .on_entry(s, move |l: &mut Log| l.0.push(format!("enter {s:?}")))
            .on_exit(s, move |l: &mut Log| l.0.push(format!("exit {s:?}")));
    }
    b.edge(Edge::new(S::Off, K::Go, S::P).action(|l: &mut Log, _| l.0.push("act go".into())))
        .edge(Edge::new(S::P1, K::Next, S::P2).action(|l: &mut Log, _| l.0.push("act next".into())))
        // Declared on the parent: bubbles from P1 or P2.
        .edge(Edge::new(S::P, K::Jump, S::Q11).action(|l: &mut Log, _| l.0.push("act jump".into())))
        // Self-transition on a compound state: exits and re-enters it (external).
        .edge(Edge::new(S::P, K::Back, S::P).action(|l: &mut Log, _| l.0.push("act back".into())))
        // Child to its ancestor: the ancestor is exited and re-entered.
        .edge(Edge::new(S::Q11, K::Up, S::Q).action(|l: &mut Log, _| l.0.push("act up".into())))
        .transition(S::Q, K::Finish, S::Done)
        .build()
        .unwrap()
}

fn run(def: &Definition<S, Ev, Log>, events: &[Ev]) -> (S, Vec<String>) {
    let mut i = def.new_instance(Log::default(), t0());
    let mut log_len = i.context().0.len();
    for e in events {
        log_len = i.context().0.len();
        def.send(&mut i, *e, t0()).unwrap();
    }
    (i.state(), i.context().0[log_len..].to_vec())
}

#[test]
fn initial_configuration_runs_entries_outermost_first() {
    let def = logged();
    let i = def.new_instance(Log::default(), t0());
    assert_eq!(i.state(), S::Off);
    assert_eq!(i.context().0, vec!["enter Off"]);
}

#[test]
fn entering_a_compound_state_enters_its_initial_leaf() {
    let (state, log) = run(&logged(), &[Ev::Go]);
    assert_eq!(state, S::P1);
    assert_eq!(log, ["exit Off", "act go", "enter P", "enter P1"]);
}

#[test]
fn sibling_transition_stays_inside_the_common_parent() {
    let (state, log) = run(&logged(), &[Ev::Go, Ev::Next]);
    assert_eq!(state, S::P2);
    assert_eq!(log, ["exit P1", "act next", "enter P2"]);
}

#[test]
fn bubbled_transition_exits_innermost_first_and_enters_outermost_first() {
    let (state, log) = run(&logged(), &[Ev::Go, Ev::Next, Ev::Jump]);
    assert_eq!(state, S::Q11);
    assert_eq!(
        log,
        [
            "exit P2",
            "exit P",
            "act jump",
            "enter Q",
            "enter Q1",
            "enter Q11"
        ]
    );
}

#[test]
fn external_self_transition_exits_and_reenters_the_source() {
    let (state, log) = run(&logged(), &[Ev::Go, Ev::Next, Ev::Back]);
    assert_eq!(state, S::P1, "re-entering P lands on its initial child");
    assert_eq!(
        log,
        ["exit P2", "exit P", "act back", "enter P", "enter P1"]
    );
}

#[test]
fn transition_to_an_ancestor_exits_and_reenters_it() {
    let (state, log) = run(&logged(), &[Ev::Go, Ev::Jump, Ev::Up]);
    assert_eq!(state, S::Q11);
    assert_eq!(
        log,
        [
            "exit Q11",
            "exit Q1",
            "exit Q",
            "act up",
            "enter Q",
            "enter Q1",
            "enter Q11"
        ]
    );
}

#[test]
fn final_state_handles_nothing_and_leaves_the_instance_unchanged() {
    let def = logged();
    let mut i = def.new_instance(Log::default(), t0());
    for e in [Ev::Go, Ev::Jump, Ev::Finish] {
        def.send(&mut i, e, t0()).unwrap();
    }
    assert_eq!(i.state(), S::Done);
    assert!(def.is_final(S::Done));
    let before = i.clone();
    let err = def.send(&mut i, Ev::Go, t0()).unwrap_err();
    assert!(
        matches!(err, Error::NoTransition { ref state, ref event } if state == "Done" && event == "go")
    );
    assert_eq!(i, before);
}

#[test]
fn history_records_each_transition_with_its_time_and_is_bounded() {
    let def = Definition::<S, Ev, Log>::builder("h", 1)
        .state(S::Off)
        .state(S::P)
        .transition(S::Off, K::Go, S::P)
        .transition(S::P, K::Back, S::Off)
        .history_limit(3)
        .build()
        .unwrap();
    let mut i = def.new_instance(Log::default(), t0());
    for n in 0..5 {
        let e = if n % 2 == 0 { Ev::Go } else { Ev::Back };
        let at = t0() + TimeDelta::seconds(n);
        def.send(&mut i, e, at).unwrap();
        assert_eq!(i.entered_at(), at);
    }
    let h = i.history();
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].event, "go");
    assert_eq!(h[0].at, t0() + TimeDelta::seconds(2));
    assert_eq!((h[2].from, h[2].to), (S::Off, S::P));
    assert_eq!(h[2].at, t0() + TimeDelta::seconds(4));
}

/// Off ⇄ P, with P's self-transitions on `tick` and `num` (a chat's message and reply).
fn looping(fold: bool) -> Definition<S, Ev, Log> {
    Definition::builder("loop", 1)
        .state(S::Off)
        .state(S::P)
        .transition(S::Off, K::Go, S::P)
        .transition(S::P, K::Back, S::Off)
        .transition(S::P, K::Tick, S::P)
        .transition(S::P, K::Num, S::P)
        .transition(S::Off, K::Tick, S::Off)
        .fold_self_transitions(fold)
        .history_limit(4)
        .build()
        .unwrap()
}

#[test]
fn repeated_self_transitions_fold_into_one_record_per_event() {
    let def = looping(true);
    assert!(def.folds_self_transitions());
    let mut i = def.new_instance(Log::default(), t0());
    let at = |n: i64| t0() + TimeDelta::seconds(n);
    def.send(&mut i, Ev::Go, at(0)).unwrap();
    // A chat in one state: message, reply, message, reply...
    for n in 1..=10 {
        let e = if n % 2 == 1 {
            Ev::Tick
        } else {
            Ev::Num(n as i32)
        };
        let t = def.send(&mut i, e, at(n)).unwrap();
        assert_eq!((t.from, t.to), (S::P, S::P));
        assert_eq!(
            i.entered_at(),
            at(n),
            "a self-transition still restarts the state"
        );
    }
    let h = i.history();
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!((h[0].event.as_ref(), h[0].count()), ("go", 1));
    assert_eq!(h[0].last_at, None);
    assert_eq!((h[1].event.as_ref(), h[1].repeats), ("tick", 4));
    assert_eq!((h[1].at, h[1].last_at), (at(1), Some(at(9))));
    assert_eq!((h[2].event.as_ref(), h[2].repeats), ("num", 4));
    assert_eq!((h[2].at, h[2].last_at), (at(2), Some(at(10))));

    // Leaving and coming back starts a new run: nothing folds across it.
    def.send(&mut i, Ev::Back, at(11)).unwrap();
    def.send(&mut i, Ev::Tick, at(12)).unwrap();
    def.send(&mut i, Ev::Tick, at(13)).unwrap();
    let h = i.history();
    assert_eq!(h.len(), 4, "bounded by the limit");
    let kept: Vec<_> = h
        .iter()
        .map(|r| (r.event.as_ref(), r.from, r.repeats))
        .collect();
    assert_eq!(
        kept,
        [
            ("tick", S::P, 4),
            ("num", S::P, 4),
            ("back", S::P, 0),
            ("tick", S::Off, 1)
        ]
    );

    // The JSON of a record that did not repeat is what it was before folding existed.
    let json = serde_json::to_value(&h[2]).unwrap();
    assert_eq!(
        json.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["at", "event", "from", "to"]
    );
    let json = serde_json::to_value(&h[3]).unwrap();
    assert_eq!(json["repeats"], 1);
    assert!(json["last_at"].is_string());
}

#[test]
fn without_folding_every_self_transition_is_a_record() {
    let def = looping(false);
    let mut i = def.new_instance(Log::default(), t0());
    def.send(&mut i, Ev::Go, t0()).unwrap();
    for _ in 0..3 {
        def.send(&mut i, Ev::Tick, t0()).unwrap();
    }
    assert_eq!(i.history().len(), 4);
    assert!(i.history().iter().all(|r| r.repeats == 0));
}

fn guarded() -> Definition<S, Ev, Log> {
    let num = |e: &Ev| match e {
        Ev::Num(n) => *n,
        _ => 0,
    };
    Definition::builder("guarded", 1)
        .state(S::Off)
        .state(S::P)
        .state(S::Q)
        .state(S::Done)
        .edge(
            Edge::new(S::Off, K::Num, S::P)
                .guard("n > 10", move |_, e| num(e) > 10)
                .action(|l: &mut Log, _| l.0.push("first".into())),
        )
        .edge(
            Edge::new(S::Off, K::Num, S::Q)
                .guard("n > 0", move |_, e| num(e) > 0)
                .action(|l: &mut Log, _| l.0.push("second".into())),
        )
        .edge(
            Edge::new(S::Off, K::Num, S::Done)
                .guard("n == 5", move |_, e| num(e) == 5)
                .action(|l: &mut Log, _| l.0.push("third".into())),
        )
        .build()
        .unwrap()
}

#[test]
fn guards_are_tried_in_document_order_and_the_first_enabled_wins() {
    let def = guarded();
    let mut i = def.new_instance(Log::default(), t0());
    // 5 passes the second and the third guard: the second is declared first.
    def.send(&mut i, Ev::Num(5), t0()).unwrap();
    assert_eq!(i.state(), S::Q);
    assert_eq!(i.context().0, ["second"]);

    let mut i = def.new_instance(Log::default(), t0());
    def.send(&mut i, Ev::Num(11), t0()).unwrap();
    assert_eq!(i.state(), S::P);
    assert_eq!(i.context().0, ["first"]);
}

#[test]
fn all_guards_false_is_no_transition_and_the_instance_is_unchanged() {
    let def = guarded();
    let mut i = def.new_instance(Log::default(), t0());
    let before = i.clone();
    let err = def
        .send(&mut i, Ev::Num(-1), t0() + TimeDelta::hours(1))
        .unwrap_err();
    assert!(
        matches!(err, Error::NoTransition { ref state, ref event } if state == "Off" && event == "num")
    );
    assert_eq!(i, before);
    assert!(!def.can_send(&i, &Ev::Num(-1)));
    assert!(def.can_send(&i, &Ev::Num(1)));
}

#[test]
fn unhandled_events_can_be_ignored_per_definition() {
    let def = Definition::<S, Ev, Log>::builder("lenient", 1)
        .state(S::Off)
        .state(S::P)
        .transition(S::Off, K::Go, S::P)
        .ignore_unhandled(true)
        .build()
        .unwrap();
    let mut i = def.new_instance(Log::default(), t0());
    let before = i.clone();
    let t = def.send(&mut i, Ev::Tick, t0()).unwrap();
    assert!(t.ignored);
    assert_eq!((t.from, t.to), (S::Off, S::Off));
    assert_eq!(i, before);
}

#[test]
fn hook_sees_every_transition() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let def = Definition::<S, Ev, Log>::builder("hooked", 1)
        .state(S::Off)
        .state(S::P)
        .transition(S::Off, K::Go, S::P)
        .transition(S::P, K::Back, S::Off)
        .on_transition(move |name, t| {
            sink.lock()
                .unwrap()
                .push(format!("{name}: {:?} -{}-> {:?}", t.from, t.event, t.to))
        })
        .build()
        .unwrap();
    let mut i = def.new_instance(Log::default(), t0());
    def.send(&mut i, Ev::Go, t0()).unwrap();
    def.send(&mut i, Ev::Back, t0()).unwrap();
    let _ = def.send(&mut i, Ev::Tick, t0());
    assert_eq!(
        *seen.lock().unwrap(),
        ["hooked: Off -go-> P", "hooked: P -back-> Off"]
    );
}

#[test]
fn timeout_is_due_exactly_when_the_duration_has_passed() {
    let def = Definition::<S, Ev, Log>::builder("timed", 1)
        .state(S::Off)
        .state(S::P)
        .transition(S::Off, K::Go, S::P)
        .transition(S::P, K::Tick, S::Off)
        .after(S::P, Duration::from_secs(1800), Ev::Tick)
        .build()
        .unwrap();
    let mut i = def.new_instance(Log::default(), t0());
    assert_eq!(def.due_at(&i), None, "Off has no timeout");
    assert_eq!(def.due(&i, t0() + TimeDelta::days(365)), None);

    let entered = t0() + TimeDelta::seconds(10);
    def.send(&mut i, Ev::Go, entered).unwrap();
    let deadline = entered + TimeDelta::seconds(1800);
    assert_eq!(def.due_at(&i), Some(deadline));
    assert_eq!(def.due(&i, deadline - TimeDelta::nanoseconds(1)), None);
    assert_eq!(def.due(&i, deadline), Some(Ev::Tick));
    assert_eq!(def.due(&i, deadline + TimeDelta::hours(1)), Some(Ev::Tick));

    let fired = def.due(&i, deadline).unwrap();
    def.send(&mut i, fired, deadline).unwrap();
    assert_eq!(i.state(), S::Off);
    assert_eq!(def.due_at(&i), None);
}

#[test]
fn timeout_on_an_ancestor_applies_to_its_children() {
    let def = Definition::<S, Ev, Log>::builder("timed", 1)
        .state(S::Off)
        .state(S::P)
        .child(S::P, S::P1)
        .initial_child(S::P, S::P1)
        .transition(S::Off, K::Go, S::P)
        .transition(S::P, K::Tick, S::Off)
        .after(S::P, Duration::from_secs(60), Ev::Tick)
        .build()
        .unwrap();
    let mut i = def.new_instance(Log::default(), t0());
    def.send(&mut i, Ev::Go, t0()).unwrap();
    assert_eq!(i.state(), S::P1);
    assert_eq!(def.due_at(&i), Some(t0() + TimeDelta::seconds(60)));
}

fn base() -> steadfast_state_machine::DefinitionBuilder<S, Ev, Log> {
    Definition::builder("v", 1)
        .state(S::Off)
        .state(S::P)
        .transition(S::Off, K::Go, S::P)
}

#[test]
fn builder_rejects_invalid_definitions_with_typed_errors() {
    let e = Definition::<S, Ev, Log>::builder("empty", 1)
        .build()
        .unwrap_err();
    assert!(matches!(e, DefinitionError::NoStates { .. }));

    let e = base().state(S::Off).build().unwrap_err();
    assert!(matches!(e, DefinitionError::DuplicateState { ref state } if state == "Off"));

    let e = base().transition(S::P, K::Back, S::Q).build().unwrap_err();
    assert!(matches!(e, DefinitionError::UnknownState { ref state, .. } if state == "Q"));

    let e = base().child(S::Q, S::Q1).build().unwrap_err();
    assert!(matches!(e, DefinitionError::UnknownState { ref state, .. } if state == "Q"));

    let e = base()
        .state(S::Q)
        .child(S::Q, S::Q1)
        .transition(S::P, K::Jump, S::Q)
        .build()
        .unwrap_err();
    assert!(matches!(e, DefinitionError::MissingInitialChild { ref state } if state == "Q"));

    let e = base()
        .state(S::Q)
        .child(S::Q, S::Q1)
        .initial_child(S::Q, S::P)
        .build()
        .unwrap_err();
    assert!(matches!(e, DefinitionError::InitialNotChild { .. }));

    let e = base().state(S::Q).state(S::Done).build().unwrap_err();
    assert!(
        matches!(e, DefinitionError::UnreachableStates { ref states } if states == &["Q", "Done"])
    );

    let e = base()
        .transition(S::Off, K::Go, S::Off)
        .build()
        .unwrap_err();
    assert!(matches!(e, DefinitionError::AmbiguousTransition { ref state, .. } if state == "Off"));

    let e = base()
        .state(S::Done)
        .final_state(S::Done)
        .transition(S::P, K::Finish, S::Done)
        .transition(S::Done, K::Back, S::Off)
        .build()
        .unwrap_err();
    assert!(matches!(e, DefinitionError::FinalStateNotFinal { ref state } if state == "Done"));

    let e = Definition::<S, Ev, Log>::builder("cycle", 1)
        .state(S::Off)
        .child(S::Q, S::P)
        .child(S::P, S::Q)
        .build()
        .unwrap_err();
    assert!(matches!(e, DefinitionError::ParentCycle { .. }));

    let e = base()
        .after(S::P, Duration::from_secs(1), Ev::Tick)
        .after(S::P, Duration::from_secs(2), Ev::Tick)
        .build()
        .unwrap_err();
    assert!(matches!(
        e,
        DefinitionError::InvalidSetting {
            setting: "after",
            ..
        }
    ));

    // Guarded alternatives followed by an unguarded default are fine.
    base()
        .state(S::Q)
        .edge(Edge::new(S::P, K::Next, S::Q).guard("g", |_, _| true))
        .transition(S::P, K::Next, S::Off)
        .build()
        .unwrap();
}

#[test]
fn sending_to_the_wrong_definition_is_a_typed_error() {
    let a = base().build().unwrap();
    let b = Definition::<S, Ev, Log>::builder("v", 2)
        .state(S::Off)
        .state(S::P)
        .transition(S::Off, K::Go, S::P)
        .build()
        .unwrap();
    let mut i = a.new_instance(Log::default(), t0());
    let before = i.clone();
    let e = b.send(&mut i, Ev::Go, t0()).unwrap_err();
    assert!(matches!(
        e,
        Error::DefinitionMismatch {
            expected_version: 2,
            found_version: 1,
            ..
        }
    ));
    assert_eq!(i, before);
}

#[test]
fn registry_restores_by_version_and_migrates_retired_versions() {
    let v1 = Arc::new(base().build().unwrap());
    let v3 = Arc::new(
        Definition::<S, Ev, Log>::builder("v", 3)
            .state(S::Off)
            .state(S::Q)
            .transition(S::Off, K::Go, S::Q)
            .build()
            .unwrap(),
    );
    let mut old = v1.new_instance(Log::default(), t0());
    v1.send(&mut old, Ev::Go, t0()).unwrap();
    let stored = serde_json::to_value(&old).unwrap();

    let mut reg: Registry<S, Ev, Log> = Registry::new();
    reg.register(v1.clone()).unwrap();
    assert!(matches!(
        reg.register(v1.clone()),
        Err(DefinitionError::DuplicateDefinition { version: 1, .. })
    ));
    let (def, back) = reg.restore(stored.clone()).unwrap();
    assert_eq!(def.version(), 1);
    assert_eq!(back, old);

    // v1 retired, v3 current: without a migration the instance cannot be restored...
    let mut reg: Registry<S, Ev, Log> = Registry::new();
    reg.register(v3.clone()).unwrap();
    let e = reg.restore(stored.clone()).unwrap_err();
    assert!(matches!(e, Error::UnknownDefinition { version: 1, .. }));

    // ...with migrations 1 -> 2 -> 3 it is, and it then runs on v3.
    reg.migration("v", 1, 2, |mut v| {
        v["state"] = "Q".into();
        Ok(v)
    })
    .migration("v", 2, 3, |mut v| {
        v["context"] = serde_json::json!(["migrated"]);
        Ok(v)
    });
    let (def, mut back) = reg.restore(stored.clone()).unwrap();
    assert_eq!((def.version(), back.definition_version()), (3, 3));
    assert_eq!(back.state(), S::Q);
    assert_eq!(back.context().0, ["migrated"]);
    assert_eq!(reg.latest("v").unwrap().version(), 3);
    let e = def.send(&mut back, Ev::Go, t0()).unwrap_err();
    assert!(matches!(e, Error::NoTransition { .. }));

    let mut failing: Registry<S, Ev, Log> = Registry::new();
    failing.register(v3).unwrap();
    failing.migration("v", 1, 3, |_| Err("no way".into()));
    assert!(matches!(
        failing.restore(stored),
        Err(Error::Migration { from: 1, .. })
    ));
}

#[test]
fn mermaid_renders_nested_states_initials_finals_and_guards() {
    let m = logged().to_mermaid();
    assert!(m.starts_with("stateDiagram-v2\n    [*] --> Off\n"), "{m}");
    for line in [
        "    state P {\n        [*] --> P1\n        P1\n        P2\n        P1 --> P2 : Next\n    }",
        "    state Q {\n        [*] --> Q1\n        state Q1 {\n            [*] --> Q11\n            Q11\n        }\n",
        "    Done --> [*]",
        "    Off --> P : Go",
        "    P --> Q11 : Jump",
    ] {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
    let g = guarded().to_mermaid();
    assert!(g.contains("Off --> P : Num [n > 10]"), "{g}");
}
