//! A saga definition: a name, a version and ordered steps, built and validated once.

use std::collections::HashSet;
use std::fmt;

use steadfast_retry::RetryPolicy;

use crate::config::default_compensation_policy;
use crate::{ConfigError, Error, Step};

/// The longest saga or step name.
pub const MAX_NAME_LEN: usize = 64;

/// A saga definition: ordered steps over an input of type `I`. Build it once at start-up
/// ([`Saga::builder`]) and share it with a [`SagaRunner`](crate::SagaRunner).
pub struct Saga<I> {
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) steps: Vec<Step<I>>,
    pub(crate) after_pivot_policy: RetryPolicy,
}

impl<I> fmt::Debug for Saga<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Saga")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl<I: Send + Sync + 'static> Saga<I> {
    /// A builder for saga `name` (1 to 64 of `[A-Za-z0-9_.-]`), version 1.
    pub fn builder(name: impl Into<String>) -> SagaBuilder<I> {
        SagaBuilder {
            name: name.into(),
            version: 1,
            steps: Vec::new(),
            after_pivot_policy: default_compensation_policy(),
        }
    }
}

impl<I> Saga<I> {
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step<I>] {
        &self.steps
    }

    /// The policy steps after a completed pivot are retried under.
    pub fn after_pivot_policy(&self) -> &RetryPolicy {
        &self.after_pivot_policy
    }
}

/// Builds a validated [`Saga`]; see [`Saga::builder`].
#[must_use]
pub struct SagaBuilder<I> {
    name: String,
    version: u32,
    steps: Vec<Step<I>>,
    after_pivot_policy: RetryPolicy,
}

impl<I> fmt::Debug for SagaBuilder<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaBuilder")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl<I: Send + Sync + 'static> SagaBuilder<I> {
    /// The definition's version (default 1). A runner resumes only sagas of its own name and
    /// version, so bump it when steps change meaning, and keep the old definition running
    /// until its sagas are finished.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Appends a step.
    pub fn step(mut self, step: impl Into<Step<I>>) -> Self {
        self.steps.push(step.into());
        self
    }

    /// How steps after a completed pivot are retried: the saga can no longer turn back, so
    /// they are retried hard (default: [`default_compensation_policy`]).
    pub fn after_pivot_policy(mut self, policy: RetryPolicy) -> Self {
        self.after_pivot_policy = policy;
        self
    }

    /// Validates and returns the definition. Refused: no steps, an invalid saga or step name,
    /// two steps with one name.
    pub fn build(self) -> Result<Saga<I>, Error> {
        check_name("saga", &self.name)?;
        if self.steps.is_empty() {
            return Err(ConfigError::NoSteps(self.name).into());
        }
        let mut seen = HashSet::new();
        for step in &self.steps {
            check_name("step", &step.name)?;
            if !seen.insert(step.name.as_str()) {
                return Err(ConfigError::DuplicateStep {
                    saga: self.name.clone(),
                    step: step.name.clone(),
                }
                .into());
            }
        }
        Ok(Saga {
            name: self.name,
            version: self.version,
            steps: self.steps,
            after_pivot_policy: self.after_pivot_policy,
        })
    }
}

fn check_name(what: &'static str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StepError;

    fn step(name: &str) -> Step<()> {
        Step::new(name, |_ctx| async { Ok::<_, StepError>(()) }).build()
    }

    #[test]
    fn builder_refuses_what_cannot_work() {
        let err = |b: SagaBuilder<()>| match b.build() {
            Err(Error::InvalidConfig(e)) => e,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(
            err(Saga::builder("s")),
            ConfigError::NoSteps("s".to_owned())
        );
        assert!(matches!(
            err(Saga::builder("s").step(step("a")).step(step("a"))),
            ConfigError::DuplicateStep { .. }
        ));
        assert!(matches!(
            err(Saga::builder("bad name").step(step("a"))),
            ConfigError::InvalidName { what: "saga", .. }
        ));
        assert!(matches!(
            err(Saga::builder("s").step(step("a:b"))),
            ConfigError::InvalidName { what: "step", .. }
        ));
        let saga = Saga::builder("s")
            .version(3)
            .step(step("a"))
            .step(step("b"))
            .build()
            .unwrap();
        assert_eq!(saga.version(), 3);
        assert_eq!(saga.steps()[1].name(), "b");
    }
}
