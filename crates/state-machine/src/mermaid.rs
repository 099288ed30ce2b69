//! Rendering a definition as a Mermaid `stateDiagram-v2`.

use std::fmt::Write;

use crate::definition::Definition;
use crate::types::{Event, StateId};

impl<S: StateId, E: Event, C> Definition<S, E, C> {
    /// Renders the definition as a Mermaid `stateDiagram-v2`: compound states as nested
    /// `state X { ... }` blocks with their `[*]` initial child, transitions labelled with the
    /// event kind and `[guard]`, final states as `--> [*]`, timeouts as notes. State ids are the
    /// states' `Debug` forms. Each transition is written inside the innermost compound state
    /// that contains both ends, as Mermaid wants.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("stateDiagram-v2\n");
        let top = self.states[self.initial].id;
        let _ = writeln!(out, "    [*] --> {top:?}");
        self.render_level(None, 1, &mut out);
        out
    }

    fn render_level(&self, container: Option<usize>, depth: usize, out: &mut String) {
        let pad = "    ".repeat(depth);
        for (i, node) in self.states.iter().enumerate() {
            if node.parent != container {
                continue;
            }
            if node.children.is_empty() {
                let _ = writeln!(out, "{pad}{:?}", node.id);
            } else {
                let _ = writeln!(out, "{pad}state {:?} {{", node.id);
                if let Some(c) = node.initial {
                    let _ = writeln!(out, "{pad}    [*] --> {:?}", self.states[c].id);
                }
                self.render_level(Some(i), depth + 1, out);
                let _ = writeln!(out, "{pad}}}");
            }
            if node.is_final {
                let _ = writeln!(out, "{pad}{:?} --> [*]", node.id);
            }
            if let Some((after, event)) = &node.after {
                let _ = writeln!(
                    out,
                    "{pad}note right of {:?} : after {}s sends {}",
                    node.id,
                    after.num_seconds(),
                    event.name()
                );
            }
        }
        for t in &self.transitions {
            if self.container_of(t.source, t.target) != container {
                continue;
            }
            let _ = write!(
                out,
                "{pad}{:?} --> {:?} : {:?}",
                self.states[t.source].id, self.states[t.target].id, t.kind
            );
            if let Some((label, _)) = &t.guard {
                let _ = write!(out, " [{label}]");
            }
            out.push('\n');
        }
    }

    /// Innermost state that is a proper ancestor of both ends (`None`: top level).
    fn container_of(&self, a: usize, b: usize) -> Option<usize> {
        let mut s = self.states[a].parent;
        while let Some(i) = s {
            let mut t = self.states[b].parent;
            while let Some(j) = t {
                if i == j {
                    return Some(i);
                }
                t = self.states[j].parent;
            }
            s = self.states[i].parent;
        }
        None
    }
}
