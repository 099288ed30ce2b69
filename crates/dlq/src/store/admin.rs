//! [`QueueAdmin`]: the operator's contract.

use async_trait::async_trait;

use crate::{Error, Filter, Message, MessageId, Page, Pruned, QueueStats, Retention};

/// The operator's side of a durable queue: inspect and list messages, replay dead letters or
/// make waiting ones run now, delete and purge, prune by retention, and read stats. An admin
/// API, a retention task and dashboards call it; the worker's side (enqueue, claim, settle) is
/// [`QueueStore`](crate::QueueStore), and a store implements both.
///
/// # Contract for adapter authors
///
/// - **Object-safe** (`#[async_trait]`): callers hold `Arc<dyn QueueAdmin>` (or
///   [`Arc<dyn Queue>`](crate::Queue) for both sides).
/// - **Operator actions never race the worker's fencing**: a replay or run-now changes a
///   message only in the states its method names, and a worker still holding a lease on a
///   message that was deleted or replayed gets [`Error::LeaseLost`] from its next settling
///   write, never a silent overwrite.
/// - **Dedup keys stay unique** through every action here: a replayed message keeps its key,
///   and a key is freed only when its message is deleted, purged or pruned.
/// - **Errors**: [`Error::NotFound`] for an unknown id, [`Error::WrongState`] when the action
///   does not apply to the message's state, [`Error::InvalidInput`] for a filter the action
///   refuses, [`Error::StoreUnavailable`] with nothing written when the store is down.
/// - **Proof**: an adapter is done when it passes `steadfast_dlq::testing::conformance`
///   (feature `testing`), whose operator cases test this trait.
#[async_trait]
pub trait QueueAdmin: Send + Sync + std::fmt::Debug {
    /// One message with its error history.
    async fn get(&self, id: MessageId) -> Result<Option<Message>, Error>;

    /// Messages selected by `filter` (dead letters by default), oldest id first.
    async fn list(&self, filter: &Filter, page: Page) -> Result<Vec<Message>, Error>;

    /// Moves one `dead` or `retrying` message back to `pending`, due now, attempts reset and
    /// its horizon restarted (error history kept). Any other state is
    /// [`Error::WrongState`] (expected `dead`).
    async fn replay(&self, id: MessageId) -> Result<(), Error>;

    /// Replays every message selected by `filter` (which must select dead letters or
    /// `retrying` messages); returns how many. Dedup keys stay unique: a dead letter still
    /// holds its key, so no live copy can exist beside it.
    async fn replay_matching(&self, filter: &Filter) -> Result<u64, Error>;

    /// Makes one `retrying` or `pending` message due now, keeping its attempts and history
    /// (an operator's "run now" after an outage). Any other state is [`Error::WrongState`]
    /// (expected `retrying`).
    async fn run_now(&self, id: MessageId) -> Result<(), Error>;

    /// Deletes one message; `false` when there was none.
    async fn delete(&self, id: MessageId) -> Result<bool, Error>;

    /// Deletes every message selected by `filter`; returns how many.
    async fn purge(&self, filter: &Filter) -> Result<u64, Error>;

    /// Deletes `done` and old `dead` messages per `retention`.
    async fn prune(&self, retention: &Retention) -> Result<Pruned, Error>;

    /// Stats of every queue that holds messages, by queue name.
    async fn stats(&self) -> Result<Vec<QueueStats>, Error>;
}
