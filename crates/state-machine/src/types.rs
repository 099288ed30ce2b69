//! What a state type and an event type must provide.

use std::fmt::Debug;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A state identifier: usually a field-less enum deriving
/// `Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize`. Implemented for every such
/// type. Its `Debug` form names it in diagrams and errors.
pub trait StateId:
    Copy + Eq + Hash + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

impl<T> StateId for T where
    T: Copy + Eq + Hash + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

/// An event. Events may carry data (a message text, an intent), so transitions are declared on
/// the event's [`Kind`](Event::Kind), a field-less discriminant; guards and actions see the
/// whole event. For a field-less event enum, `type Kind = Self`.
///
/// ```
/// use steadfast_state_machine::Event;
///
/// #[derive(Clone, Debug)]
/// enum Ev { Message(String), Reset }
///
/// #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
/// enum EvKind { Message, Reset }
///
/// impl Event for Ev {
///     type Kind = EvKind;
///     fn kind(&self) -> EvKind {
///         match self { Ev::Message(_) => EvKind::Message, Ev::Reset => EvKind::Reset }
///     }
///     fn name(&self) -> &'static str {
///         match self { Ev::Message(_) => "message", Ev::Reset => "reset" }
///     }
/// }
/// assert_eq!(Ev::Message("hi".into()).name(), "message");
/// ```
pub trait Event: Clone + Debug + Send + Sync + 'static {
    /// The discriminant transitions are declared on.
    type Kind: Copy + Eq + Hash + Debug + Send + Sync + 'static;
    /// This event's kind.
    fn kind(&self) -> Self::Kind;
    /// A stable name, recorded in history and shown in diagrams (e.g. `"user_message"`).
    fn name(&self) -> &'static str;
}
