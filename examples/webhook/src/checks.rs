//! Dependency checks and queue statistics, computed in the background and served from memory.
//!
//! `/health` and `/metrics` answer anyone, and a request to either used to touch the stores: a
//! probe of the queue and of Redis per `/health`, a `GROUP BY` over the whole queue table per
//! `/metrics`. A flood of either took every pooled connection, and `/webhook` answered 503. Now
//! one task per process checks the stores every [`REFRESH_EVERY`] (and reads the queue's
//! statistics every [`STATS_EVERY`]), keeps the result in a [`Snapshot`], and the handlers only
//! read it: the load on the stores is fixed, whatever the request rate.
//!
//! A check's outcome is a word ([`Status`]); its detail (the driver's error text, which can
//! name hosts, users and SQL) goes to the log when the outcome changes, never into a response.
//!
//! Each statistics reading is also kept for the console's overview ([`QueueHistory`]): the
//! last two readings (for the current depth and throughput) and one sample a minute for the
//! last hour, in memory, so the chart costs no query either.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::watch;

use crate::ingest::Ingestor;
use crate::metrics as m;

/// How often the stores are checked. A few seconds: a load balancer probing `/health` every
/// 5-10 s sees an outage within one or two of its probes, and the stores see one cheap query
/// per period per process.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// How often the queue statistics (`webhook_queue_depth`, `webhook_dead_letters`,
/// `webhook_queue_oldest_age_seconds`) are read: the query scans the queue table, and
/// Prometheus scrapes every 15-60 s anyway.
pub const STATS_EVERY: Duration = steadfast_service_kit::queue_history::READ_EVERY;

/// How long one check may take. A stalled store is reported down after this long rather than
/// holding the refresh.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long reading the queue statistics may take.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// A check's outcome, as `/health` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Answering.
    Ok,
    /// Working with reduced guarantees (the whole service, when a dependency it can do
    /// without is down).
    Degraded,
    /// Not answering, or answering with errors.
    Down,
}

impl Status {
    /// `ok`, `degraded` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Down => "down",
        }
    }
}

/// The last outcome of each check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The queue store (Postgres or memory): down means `/webhook` cannot accept anything.
    pub queue: Status,
    /// The de-duplication fast path (Redis, or memory in the demo); `None` when none is
    /// configured. Down only degrades: ingestion fails open onto the queue's own key.
    pub dedup: Option<Status>,
    /// When the checks finished.
    pub checked_at: DateTime<Utc>,
}

/// The checks and their last [`Snapshot`]. Cheap to clone (shared).
#[derive(Clone)]
pub struct Checks(Arc<Inner>);

struct Inner {
    ingestor: Ingestor,
    queue_name: String,
    current: RwLock<Arc<Snapshot>>,
    /// The last error text logged per check (queue, dedup, stats), so each outage is logged
    /// once with its detail, not every period.
    logged: Mutex<[Option<String>; 3]>,
    history: Mutex<QueueHistory>,
}

impl std::fmt::Debug for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checks")
            .field("current", &*self.current())
            .finish_non_exhaustive()
    }
}

/// Runs `f` under [`PROBE_TIMEOUT`]; the error as text for the log.
async fn probe<F, T, E>(f: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(PROBE_TIMEOUT, f).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

const QUEUE: usize = 0;
const DEDUP: usize = 1;
const STATS: usize = 2;
const NAMES: [&str; 3] = ["queue", "dedup", "queue stats"];

impl Checks {
    /// Checks the stores of `ingestor`; statistics are read for `queue_name`. Until the first
    /// [`refresh`](Self::refresh) the queue counts as down.
    pub fn new(ingestor: Ingestor, queue_name: impl Into<String>) -> Self {
        let dedup = ingestor.dedup().map(|_| Status::Down);
        Self(Arc::new(Inner {
            ingestor,
            queue_name: queue_name.into(),
            current: RwLock::new(Arc::new(Snapshot {
                queue: Status::Down,
                dedup,
                checked_at: Utc::now(),
            })),
            logged: Mutex::new([None, None, None]),
            history: Mutex::new(QueueHistory::default()),
        }))
    }

    /// The last outcome of the checks (no I/O).
    pub fn current(&self) -> Arc<Snapshot> {
        self.0.current.read().clone()
    }

    /// Logs a check's error when it starts or changes, and its recovery; quiet otherwise.
    fn note(&self, check: usize, result: &Result<(), String>) {
        let mut logged = self.0.logged.lock();
        let name = NAMES[check];
        match result {
            Err(e) if logged[check].as_deref() != Some(e.as_str()) => {
                tracing::warn!(check = name, error = %e, "dependency check failed");
                logged[check] = Some(e.clone());
            }
            Ok(()) if logged[check].is_some() => {
                tracing::info!(check = name, "dependency check passes again");
                logged[check] = None;
            }
            _ => {}
        }
    }

    /// Runs every check now (concurrently) and stores the outcome.
    pub async fn refresh(&self) {
        let ingestor = &self.0.ingestor;
        // A primary-key lookup of an id that cannot exist: cheap, and it needs the store.
        let queue = probe(ingestor.queue().get(steadfast_dlq::MessageId::new()));
        let dedup = async {
            match ingestor.dedup() {
                Some(d) => Some(probe(d.seen("health-probe")).await),
                None => None,
            }
        };
        let (queue, dedup) = tokio::join!(queue, dedup);
        self.note(QUEUE, &queue);
        if let Some(d) = &dedup {
            self.note(DEDUP, d);
        }
        let word = |r: &Result<(), String>| if r.is_ok() { Status::Ok } else { Status::Down };
        let snapshot = Snapshot {
            queue: word(&queue),
            dedup: dedup.as_ref().map(word),
            checked_at: Utc::now(),
        };
        *self.0.current.write() = Arc::new(snapshot);
    }

    /// Reads the queue statistics into the queue gauges. On failure the gauges keep their
    /// last values (and the failure is logged once).
    pub async fn refresh_stats(&self) {
        let result = tokio::time::timeout(STATS_TIMEOUT, self.0.ingestor.queue().stats()).await;
        let stats = match result {
            Ok(Ok(stats)) => stats,
            Ok(Err(e)) => return self.note(STATS, &Err(e.to_string())),
            Err(_) => {
                return self.note(STATS, &Err(format!("no answer within {STATS_TIMEOUT:?}")));
            }
        };
        self.note(STATS, &Ok(()));
        let queue = &self.0.queue_name;
        // A queue that holds nothing is absent from the stats: report zeros.
        let s = stats
            .into_iter()
            .find(|s| &s.queue == queue)
            .unwrap_or_else(|| steadfast_dlq::QueueStats::empty(queue.clone()));
        for state in steadfast_dlq::State::ALL {
            metrics::gauge!(m::QUEUE_DEPTH, "state" => state.as_str()).set(s.count(state) as f64);
        }
        metrics::gauge!(m::DEAD_LETTERS).set(s.dead() as f64);
        metrics::gauge!(m::QUEUE_OLDEST_AGE).set(s.oldest_due_age.as_secs_f64());
        self.0
            .history
            .lock()
            .record(DepthSample::from_stats(&s, Utc::now()));
    }

    /// The queue statistics read so far (no I/O): the console's overview.
    pub fn history(&self) -> QueueHistory {
        self.0.history.lock().clone()
    }

    /// The checks and the statistics once, as at start-up: `/health` and `/metrics` are right
    /// from the first request.
    pub async fn refresh_all(&self) {
        self.refresh().await;
        if self.current().queue == Status::Ok {
            self.refresh_stats().await;
        }
    }

    /// Refreshes every [`REFRESH_EVERY`] (statistics every [`STATS_EVERY`]) until `shutdown`
    /// turns true. The first refresh is a period away: start-up runs
    /// [`refresh_all`](Self::refresh_all) itself.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + REFRESH_EVERY, REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stats_every = u32::try_from(STATS_EVERY.as_millis() / REFRESH_EVERY.as_millis())
            .unwrap_or(1)
            .max(1);
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            ticks = ticks.wrapping_add(1);
            let work = async {
                self.refresh().await;
                // A down queue would only time out again.
                if ticks % stats_every == 0 && self.current().queue == Status::Ok {
                    self.refresh_stats().await;
                }
            };
            // Shutdown does not wait for a check that a stalled store holds.
            tokio::select! {
                () = work => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

pub use steadfast_service_kit::queue_history::{DepthSample, QueueHistory};
