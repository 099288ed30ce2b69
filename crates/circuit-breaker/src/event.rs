//! Events: every transition and every rejection, broadcast to subscribers.
//!
//! The breaker keeps its own count of live subscribers so that, with nobody listening, an
//! event costs one relaxed load: the hot path never touches the channel's lock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::broadcast;

use crate::state::State;

/// Something a breaker did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The breaker moved from one state to another.
    Transition {
        /// The breaker's name.
        name: Arc<str>,
        /// The state it left.
        from: State,
        /// The state it entered.
        to: State,
    },
    /// A call was not permitted.
    Rejected {
        /// The breaker's name.
        name: Arc<str>,
        /// The state that refused it.
        state: State,
    },
    /// The breaker was reset by hand: Closed, with an empty window and counters.
    Reset {
        /// The breaker's name.
        name: Arc<str>,
    },
}

/// One state change, as given to the callbacks set with
/// [`crate::ConfigBuilder::on_state_change`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The state it left.
    pub from: State,
    /// The state it entered.
    pub to: State,
}

/// The state-change callbacks of a [`crate::Config`].
#[derive(Clone, Default)]
pub(crate) struct StateListeners(pub(crate) Vec<Arc<dyn Fn(Transition) + Send + Sync>>);

impl fmt::Debug for StateListeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateListeners({})", self.0.len())
    }
}

impl PartialEq for StateListeners {
    /// Closures cannot be compared: two lists are equal when they hold the same closures.
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl Event {
    /// The name of the breaker that emitted this event.
    pub fn name(&self) -> &str {
        match self {
            Event::Transition { name, .. }
            | Event::Rejected { name, .. }
            | Event::Reset { name } => name,
        }
    }
}

pub(crate) struct EventHub {
    sender: broadcast::Sender<Event>,
    subscribers: Arc<AtomicUsize>,
}

impl EventHub {
    pub(crate) fn new(capacity: usize) -> Self {
        EventHub {
            sender: broadcast::Sender::new(capacity.max(1)),
            subscribers: Arc::new(AtomicUsize::new(0)),
        }
    }

    #[inline]
    pub(crate) fn has_subscribers(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn emit(&self, event: impl FnOnce() -> Event) {
        if self.has_subscribers() {
            // An error only means every receiver went away meanwhile.
            let _ = self.sender.send(event());
        }
    }

    pub(crate) fn subscribe(&self) -> EventReceiver {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        EventReceiver {
            receiver: self.sender.subscribe(),
            subscribers: Arc::clone(&self.subscribers),
        }
    }
}

/// A subscription to a breaker's [`Event`]s, from [`crate::CircuitBreaker::subscribe`].
///
/// Events emitted before subscribing are not seen. A subscriber that falls more than the
/// configured capacity behind misses the oldest events ([`RecvError::Lagged`]).
#[derive(Debug)]
pub struct EventReceiver {
    receiver: broadcast::Receiver<Event>,
    subscribers: Arc<AtomicUsize>,
}

pub use tokio::sync::broadcast::error::{RecvError, TryRecvError};

impl EventReceiver {
    /// Waits for the next event.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        self.receiver.recv().await
    }

    /// The next event if one is buffered.
    pub fn try_recv(&mut self) -> Result<Event, TryRecvError> {
        self.receiver.try_recv()
    }

    /// Every buffered event, oldest first (skipping over any lag).
    pub fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            match self.receiver.try_recv() {
                Ok(e) => out.push(e),
                Err(TryRecvError::Lagged(_)) => continue,
                Err(_) => return out,
            }
        }
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}
