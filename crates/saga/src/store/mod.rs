//! The [`SagaStore`] trait and its adapters.

use std::time::Duration;

use async_trait::async_trait;

use crate::{
    Created, Entry, Error, Lease, ListFilter, NewSaga, SagaId, SagaLog, SagaSummary, State,
};

pub(crate) mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

/// The saga log: one row per saga (state, lease, fencing token) and its entries in order.
///
/// Object-safe: share one as `Arc<dyn SagaStore>`. Every adapter passes the same conformance
/// suite (`steadfast_saga::testing::conformance`, feature `testing`).
///
/// Runner writes ([`append`](Self::append), [`heartbeat`](Self::heartbeat),
/// [`release`](Self::release)) are fenced: they succeed only while the lease's `fence` is the
/// saga's current one and the saga is `running` or `compensating`, and return
/// [`Error::LeaseLost`] otherwise, having written nothing. Each write is atomic.
#[async_trait]
pub trait SagaStore: Send + Sync + std::fmt::Debug {
    /// Creates saga `saga.id`, `running`, leased to `owner` for `lease` (fence 1). If the id
    /// exists, writes nothing and returns [`Created::Exists`] with its row, whatever its
    /// definition.
    async fn create(&self, saga: NewSaga, owner: &str, lease: Duration) -> Result<Created, Error>;

    /// Appends `entry` to the leased saga's log, applies its state change
    /// ([`Entry::new_state`]) and extends the lease to now + `lease`. An entry that ends the
    /// runner's work (`Completed`, `Compensated`, `Parked`) clears the lease instead. Returns
    /// the lease as extended.
    ///
    /// Operator entries (`Retried`, `Resolved`) are refused with [`Error::InvalidInput`]: they
    /// go through [`operator_append`](Self::operator_append).
    async fn append(
        &self,
        lease: &Lease,
        entry: Entry,
        lease_for: Duration,
    ) -> Result<Lease, Error>;

    /// Extends the lease to now + `lease_for` without writing an entry.
    async fn heartbeat(&self, lease: &Lease, lease_for: Duration) -> Result<Lease, Error>;

    /// Gives the lease back (it expires now): another runner may claim the saga at once.
    async fn release(&self, lease: &Lease) -> Result<(), Error>;

    /// Claims up to `limit` sagas of definition `name` v`version` that are `running` or
    /// `compensating` and whose lease expired (or was given back): each claim increments the
    /// fence (so the previous holder's writes now fail) and leases the saga to `owner` for
    /// `lease`. Concurrent claimers never get the same saga.
    async fn claim(
        &self,
        name: &str,
        version: u32,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Lease>, Error>;

    /// The saga's row, input and whole log, or `None`.
    async fn load(&self, id: &SagaId) -> Result<Option<SagaLog>, Error>;

    /// Sagas matching `filter`, most recently written first.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<SagaSummary>, Error>;

    /// An operator's write: appends `entry` (and its state change) only if the saga is in
    /// state `expected`, whoever holds the lease; the lease is cleared, so a saga sent back to
    /// work is claimable at once. [`Error::NotFound`] or [`Error::WrongState`] otherwise.
    async fn operator_append(
        &self,
        id: &SagaId,
        entry: Entry,
        expected: State,
    ) -> Result<SagaSummary, Error>;
}

/// Whether `entry` is a runner's to write.
pub(crate) fn check_runner_entry(entry: &Entry) -> Result<(), Error> {
    match entry {
        Entry::Retried { .. } | Entry::Resolved { .. } => Err(Error::InvalidInput(
            "operator entries go through operator_append".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// Whether `entry` ends the runner's work on the saga (its lease is cleared).
pub(crate) fn ends_work(entry: &Entry) -> bool {
    entry.new_state().is_some_and(|s| !s.is_active())
}

/// The state an operator entry may leave the saga in (operator entries only).
pub(crate) fn check_operator_entry(entry: &Entry) -> Result<(), Error> {
    match entry {
        Entry::Retried { resume } if resume.is_active() => Ok(()),
        Entry::Resolved { .. } => Ok(()),
        _ => Err(Error::InvalidInput(
            "operator_append takes Retried (to running or compensating) or Resolved".to_owned(),
        )),
    }
}
