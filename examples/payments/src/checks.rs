//! `/health` and the gauges of `/metrics`, served from memory.
//!
//! A background task refreshes one snapshot (ledger totals, the callback queue's stats, saga
//! counts) every few seconds; requests read the last snapshot and never touch a store, so a
//! scraper or a load balancer cannot add load to a struggling database.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use steadfast_dlq::Queue;
use steadfast_service_kit::queue_history::{DepthSample, QueueHistory};

use crate::callback::CALLBACK_QUEUE;
use crate::ledger::{Ledger, Totals};

/// How often the snapshot is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// What `/health` shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// The stores: `memory` or `postgres`.
    pub storage: &'static str,
    /// Whether the ledger answered at the last refresh.
    pub ledger: bool,
    /// Whether the callback queue answered at the last refresh.
    pub queue: bool,
    /// The ledger sums (when it answered).
    pub totals: Option<Totals>,
    /// Parked callbacks.
    pub parked_callbacks: u64,
    /// Callbacks waiting for the worker.
    pub queued_callbacks: u64,
    /// When this snapshot was taken (`None` before the first refresh).
    pub checked_at: Option<DateTime<Utc>>,
}

/// The snapshot holder. Cheap to clone.
#[derive(Clone)]
pub struct Checks {
    current: Arc<RwLock<Arc<Snapshot>>>,
    ledger: Arc<dyn Ledger>,
    queue: Arc<dyn Queue>,
    storage: &'static str,
    /// The callback queue's recent statistics, for the console's overview (`/admin/stats`).
    history: Arc<Mutex<QueueHistory>>,
}

impl std::fmt::Debug for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checks")
            .field("current", &self.current())
            .finish()
    }
}

impl Checks {
    /// Checks of `ledger` and `queue`; `storage` names the stores in the answer.
    pub fn new(ledger: Arc<dyn Ledger>, queue: Arc<dyn Queue>, storage: &'static str) -> Self {
        Checks {
            current: Arc::new(RwLock::new(Arc::new(Snapshot {
                status: "ok",
                storage,
                ledger: true,
                queue: true,
                totals: None,
                parked_callbacks: 0,
                queued_callbacks: 0,
                checked_at: None,
            }))),
            ledger,
            queue,
            storage,
            history: Arc::default(),
        }
    }

    /// The callback queue's recent statistics (a reading per refresh, a sample a minute).
    pub fn history(&self) -> QueueHistory {
        self.history.lock().clone()
    }

    /// The last snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.read().clone()
    }

    /// Takes a new snapshot now (the background task calls this; tests may too).
    pub async fn refresh(&self) {
        let totals = self.ledger.totals().await.ok();
        let stats = self.queue.stats().await.ok();
        let callbacks = stats
            .as_ref()
            .and_then(|all| all.iter().find(|s| s.queue == CALLBACK_QUEUE).cloned());
        let (parked, queued) = callbacks.as_ref().map_or((0, 0), |s| (s.dead(), s.depth()));
        if let Some(s) = &callbacks {
            self.history
                .lock()
                .record(DepthSample::from_stats(s, Utc::now()));
        } else if stats.is_some() {
            // No callback yet: the queue is empty, which is a reading too.
            self.history.lock().record(DepthSample {
                at: Utc::now(),
                pending: 0,
                running: 0,
                retrying: 0,
                dead: 0,
                done: 0,
                oldest_due_age_seconds: 0.0,
            });
        }
        let snapshot = Snapshot {
            status: if totals.is_some() && stats.is_some() {
                "ok"
            } else {
                "degraded"
            },
            storage: self.storage,
            ledger: totals.is_some(),
            queue: stats.is_some(),
            totals,
            parked_callbacks: parked,
            queued_callbacks: queued,
            checked_at: Some(Utc::now()),
        };
        if let Some(t) = &snapshot.totals {
            metrics::gauge!(crate::metrics::LEDGER_PENDING_PAYOUTS).set(t.pending_count as f64);
            metrics::gauge!(crate::metrics::LEDGER_INVARIANT).set(if t.holds() {
                1.0
            } else {
                0.0
            });
        }
        metrics::gauge!(crate::metrics::CALLBACKS_PARKED).set(parked as f64);
        *self.current.write() = Arc::new(snapshot);
    }

    /// Refreshes every [`REFRESH_EVERY`] until `shutdown` turns true.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            self.refresh().await;
            tokio::select! {
                () = tokio::time::sleep(REFRESH_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
