//! The crate's two error types: [`DefinitionError`] when a definition is built or
//! registered (a programming mistake, found once at start-up), [`Error`] when an instance is
//! driven, restored or persisted (at run time, per event).
//!
//! They are apart so that a caller matches only what can happen where it stands: a service
//! that builds its definitions at start-up and `expect`s them never has to handle
//! `DuplicateState` in its request path, and a `send` never returns a building error.

/// A definition could not be built ([`DefinitionBuilder::build`](crate::DefinitionBuilder::build))
/// or registered ([`Registry::register`](crate::Registry::register)). Every variant is a mistake
/// in the definition: fix it; building it again fails the same way. States and events are
/// carried as text (their `Debug` form / event name) so that the error is not generic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DefinitionError {
    /// The definition declares no state at all.
    #[error("definition `{definition}` declares no state")]
    NoStates {
        /// Definition name.
        definition: String,
    },
    /// A state was declared twice.
    #[error("state {state} is declared twice")]
    DuplicateState {
        /// The state.
        state: String,
    },
    /// A transition, action, parent or timeout names a state that was never declared.
    #[error("unknown state {state} (used by {used_by}); declare it with `state` or `child`")]
    UnknownState {
        /// The state.
        state: String,
        /// What referred to it.
        used_by: String,
    },
    /// Declared parents form a cycle.
    #[error("state {state} is its own ancestor")]
    ParentCycle {
        /// A state on the cycle.
        state: String,
    },
    /// A compound state (one with children) has no initial child.
    #[error("compound state {state} has no initial child; call `initial_child`")]
    MissingInitialChild {
        /// The compound state.
        state: String,
    },
    /// An initial state is not a child of the state it is the initial of (or, at the top, not a
    /// top-level state).
    #[error("{child} is not a direct child of {parent}")]
    InitialNotChild {
        /// The parent (or `<root>`).
        parent: String,
        /// The state named initial.
        child: String,
    },
    /// States that no sequence of events can reach from the initial state.
    #[error("unreachable states: {states:?}")]
    UnreachableStates {
        /// The states.
        states: Vec<String>,
    },
    /// A transition can never fire: an earlier one for the same state and event has no guard,
    /// or it duplicates an earlier unguarded one.
    #[error(
        "ambiguous transition from {state} on `{event}`: an earlier unguarded transition always wins"
    )]
    AmbiguousTransition {
        /// The source state.
        state: String,
        /// The event.
        event: String,
    },
    /// A final state declares an outgoing transition or a timeout, or has children.
    #[error("final state {state} cannot have outgoing transitions, timeouts or children")]
    FinalStateNotFinal {
        /// The state.
        state: String,
    },
    /// A setting is out of range.
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },

    // ---- registering ----
    /// A definition with this name and version is already registered: register each version
    /// once (a new definition needs a new version).
    #[error("definition `{name}` v{version} registered twice")]
    DuplicateDefinition {
        /// Definition name.
        name: String,
        /// Version.
        version: u32,
    },
}

/// What went wrong at run time: sending an event, restoring an instance or persisting it.
/// States and events are carried as text (their `Debug` form / event name) so that the error
/// is not generic and can cross a `dyn SnapshotStore`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- sending an event ----
    /// No transition is enabled for this event in the current state (nor any ancestor). The
    /// instance is unchanged: the event does not apply now; drop it or tell the sender.
    #[error("no transition from {state} on `{event}`")]
    NoTransition {
        /// The current (leaf) state.
        state: String,
        /// The event's name.
        event: String,
    },
    /// The instance belongs to another definition (or version): restore it through a
    /// [`Registry`](crate::Registry), which migrates old versions.
    #[error(
        "instance of `{found}` v{found_version} sent to definition `{expected}` v{expected_version}"
    )]
    DefinitionMismatch {
        /// This definition's name.
        expected: String,
        /// This definition's version.
        expected_version: u32,
        /// The instance's definition name.
        found: String,
        /// The instance's definition version.
        found_version: u32,
    },
    /// The instance's current state is not a leaf of its definition (corrupt or hand-edited
    /// data). Retrying fails the same way: repair or delete the stored instance.
    #[error("instance is in {state}, which is not a leaf state of `{definition}`")]
    InvalidInstanceState {
        /// Definition name.
        definition: String,
        /// The state.
        state: String,
    },

    // ---- restoring through a registry ----
    /// No definition with this name and version is registered, and no migration leads from it
    /// to one that is: register that version, or a migration from it.
    #[error("no definition `{name}` v{version} registered, and no migration from it")]
    UnknownDefinition {
        /// Definition name.
        name: String,
        /// Version.
        version: u32,
    },
    /// A registered migration failed: fix the migration (or the stored data); retrying fails
    /// the same way.
    #[error("migration of `{name}` from v{from} failed: {reason}")]
    Migration {
        /// Definition name.
        name: String,
        /// The version it migrates from.
        from: u32,
        /// Why.
        reason: String,
    },

    // ---- persistence ----
    /// Optimistic concurrency: someone saved this key since it was loaded. Reload, re-apply
    /// the event, save again.
    #[error("version conflict on `{key}`: expected v{expected}, found {}", .actual.map_or_else(|| "nothing".to_owned(), |v| format!("v{v}")))]
    Conflict {
        /// The key.
        key: String,
        /// The version the writer expected (0: the key must not exist yet).
        expected: u64,
        /// The version stored (`None`: no row).
        actual: Option<u64>,
    },
    /// An instance could not be (de)serialized: the stored JSON does not match the context
    /// type. Retrying fails the same way; register a migration for the old shape.
    #[error("instance (de)serialization failed: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The snapshot store is down, timed out or failed the query: nothing was saved. Retry
    /// later (a webhook answers 503 so the sender retries).
    #[error("snapshot store unavailable: {0}")]
    StoreUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Whether this is an optimistic-concurrency conflict (reload and retry).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }
}
