//! Start-up: turns a [`Config`] into running parts (stores, router, worker, sweeper) and shuts
//! them down in order.
//!
//! `open_stores` is the one place that picks the stores, from `storage.backend`
//! ([`crate::config::Backend`]):
//!
//! - SQLite (nothing configured): queue, dead letters, conversations and sagas in one file,
//!   `storage.sqlite_path`, its folder created, migrated at start-up; durable, single
//!   instance. A second process on the same file is refused at start-up
//!   ([`SqliteInstanceLock`], held for the [`App`]'s lifetime). The de-duplication fast path is
//!   the in-process `MemoryStore`, as in memory mode: with one instance it sees every
//!   delivery, costs no write on the file's single write lock, and after a restart the queue's
//!   own durable message key still refuses the duplicate.
//! - Postgres (`DATABASE_URL`): the Postgres queue, dead letters, conversations and sagas
//!   (migrated at start-up), and the Redis de-duplication fast path when `REDIS_URL` is set;
//!   several instances side by side.
//! - Memory (`--demo`): in-memory everything; nothing survives a restart.
//!
//! Without Postgres, every service without endpoints gets a built-in echo downstream. The
//! queue remembers done messages' keys for the dedup window, so it is also the record of what
//! was processed. Reply-action sagas' recovery loop runs with the worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::SqlitePool;
use steadfast_circuit_breaker::Preset;
use steadfast_dlq::{MemoryQueue, PostgresQueue, Queue, SqliteInstanceLock, SqliteQueue, Worker};
use steadfast_idempotency::{DedupStore, Deduplicator, MemoryStore, RedisStore};
use steadfast_saga::{MemorySagaStore, PostgresSagaStore, SagaStore, SqliteSagaStore};
use steadfast_service_registry::Registry;
use steadfast_state_machine::{MemorySnapshots, PostgresSnapshots, SnapshotStore, SqliteSnapshots};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::app::AppState;
use crate::config::{Backend, Config};
use crate::http::server;
use crate::ingest::Ingestor;
use crate::ratelimit::IpRateLimiter;
use crate::signature::Verifier;
use crate::worker::graph::{self, GraphClient};
use crate::worker::{MetricsHooks, Services};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A store could not be reached or migrated at start-up.
    #[error("{what}: {message}")]
    Store {
        /// Which store.
        what: &'static str,
        /// The error.
        message: String,
    },
    /// A part could not be built from the configuration.
    #[error("{what}: {message}")]
    Setup {
        /// Which part.
        what: &'static str,
        /// The error.
        message: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn setup(what: &'static str) -> impl FnOnce(String) -> StartupError {
    move |message| StartupError::Setup { what, message }
}

/// The stores, chosen by the configuration.
struct Stores {
    queue: Arc<dyn Queue>,
    snapshots: Arc<dyn SnapshotStore>,
    sagas: Arc<dyn SagaStore>,
    fast_path: Option<Arc<dyn DedupStore>>,
    kind: &'static str,
    /// SQLite only: this process's exclusive hold on the database file.
    instance: Option<SqliteInstanceLock>,
}

pub use steadfast_service_kit::storage::ACQUIRE_TIMEOUT;

/// Connects to Postgres (with a bounded acquire time, so a down database answers 503 quickly).
pub async fn connect_postgres(config: &Config) -> Result<PgPool, StartupError> {
    let url = config
        .storage
        .database_url
        .as_ref()
        .ok_or_else(|| StartupError::Store {
            what: "postgres",
            message: "DATABASE_URL is not set".into(),
        })?;
    connect_url(
        url.expose(),
        config.storage.pool_size,
        Some(config.storage.store_timeout),
    )
    .await
}

/// A pool on `url`. With `statement_timeout`, every connection gets it as Postgres's
/// `statement_timeout` (sent in the start-up packet, so no extra round trip): a statement
/// stuck on the server (a lock wait, a slow plan) is cancelled there and its connection comes
/// back. A network that swallows packets is the client-side bound's job (`store_timeout`
/// around each call); the server never sees those statements.
async fn connect_url(
    url: &str,
    pool_size: u32,
    statement_timeout: Option<Duration>,
) -> Result<PgPool, StartupError> {
    let cannot = |e: sqlx::Error| StartupError::Store {
        what: "postgres",
        message: format!("cannot connect: {e}"),
    };
    let mut options: PgConnectOptions = url.parse().map_err(cannot)?;
    if let Some(t) = statement_timeout {
        options = options.options([("statement_timeout", format!("{}ms", t.as_millis()))]);
    }
    PgPoolOptions::new()
        .max_connections(pool_size)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(cannot)
}

/// Applies every store's migrations (idempotent; safe with several instances starting).
pub async fn migrate_pool(pool: &PgPool) -> Result<(), StartupError> {
    let err = |what: &'static str| {
        move |e: String| StartupError::Store {
            what,
            message: format!("migration failed: {e}"),
        }
    };
    PostgresQueue::migrate(pool)
        .await
        .map_err(|e| err("dlq")(e.to_string()))?;
    PostgresSnapshots::migrate(pool)
        .await
        .map_err(|e| err("conversations")(e.to_string()))?;
    PostgresSagaStore::migrate(pool)
        .await
        .map_err(|e| err("sagas")(e.to_string()))?;
    Ok(())
}

/// Applies the Postgres migrations of every store the service uses (`migrate` subcommand).
pub async fn migrate(database_url: &str) -> Result<(), StartupError> {
    // No statement timeout: a migration may rightly take longer than one store call.
    let pool = connect_url(database_url, 2, None).await?;
    migrate_pool(&pool).await
}

/// Opens the SQLite database file at `path` for one service instance (the kit's
/// [`steadfast_service_kit::storage::sqlite_pool`]), its error as a start-up error.
pub async fn sqlite_pool(
    path: &std::path::Path,
    pool_size: u32,
) -> Result<(SqlitePool, SqliteInstanceLock), StartupError> {
    steadfast_service_kit::storage::sqlite_pool(path, pool_size)
        .await
        .map_err(|e| StartupError::Store {
            what: "sqlite",
            message: match e {
                steadfast_service_kit::Error::Sqlite(m) => m,
                other => other.to_string(),
            },
        })
}

/// Opens the SQLite file of `config` ([`sqlite_pool`]) and applies each store's migrations.
async fn open_sqlite(config: &Config) -> Result<(SqlitePool, SqliteInstanceLock), StartupError> {
    let (pool, instance) =
        sqlite_pool(&config.storage.sqlite_path, config.storage.pool_size).await?;
    let failed = |what: &'static str| {
        move |e: String| StartupError::Store {
            what,
            message: format!("migration failed: {e}"),
        }
    };
    SqliteQueue::migrate(&pool)
        .await
        .map_err(|e| failed("dlq")(e.to_string()))?;
    SqliteSnapshots::migrate(&pool)
        .await
        .map_err(|e| failed("conversations")(e.to_string()))?;
    SqliteSagaStore::migrate(&pool)
        .await
        .map_err(|e| failed("sagas")(e.to_string()))?;
    Ok((pool, instance))
}

async fn open_stores(config: &Config, pool: Option<PgPool>) -> Result<Stores, StartupError> {
    let qc = config
        .worker
        .queue_config(&config.storage.queue_name)
        .map_err(setup("queue config"))?;
    match config.storage.backend {
        Backend::Memory => {
            return Ok(Stores {
                queue: Arc::new(MemoryQueue::with_config(qc)),
                snapshots: Arc::new(MemorySnapshots::new()),
                sagas: Arc::new(MemorySagaStore::new()),
                fast_path: Some(Arc::new(MemoryStore::new())),
                kind: "memory",
                instance: None,
            });
        }
        Backend::Sqlite => {
            let (pool, instance) = open_sqlite(config).await?;
            return Ok(Stores {
                queue: Arc::new(SqliteQueue::with_config(pool.clone(), qc)),
                snapshots: Arc::new(SqliteSnapshots::new(pool.clone())),
                sagas: Arc::new(SqliteSagaStore::new(pool)),
                fast_path: Some(Arc::new(MemoryStore::new())),
                kind: "sqlite",
                instance: Some(instance),
            });
        }
        Backend::Postgres => {}
    }
    let Some(pool) = pool else {
        return Err(StartupError::Store {
            what: "postgres",
            message: "storage.backend is postgres but no pool was given".into(),
        });
    };
    migrate_pool(&pool).await?;
    let fast_path: Option<Arc<dyn DedupStore>> = match &config.storage.redis_url {
        // Lazy: the service starts (and fails open) while Redis is down.
        Some(url) => Some(Arc::new(
            RedisStore::lazy(url.expose(), config.storage.redis_prefix.clone()).map_err(|e| {
                StartupError::Store {
                    what: "redis",
                    message: e.to_string(),
                }
            })?,
        )),
        None => None,
    };
    Ok(Stores {
        queue: Arc::new(PostgresQueue::with_config(pool.clone(), qc)),
        snapshots: Arc::new(PostgresSnapshots::new(pool.clone())),
        sagas: Arc::new(PostgresSagaStore::new(pool.clone())),
        fast_path,
        kind: "postgres",
        instance: None,
    })
}

async fn build_services(
    config: &Arc<Config>,
    stores: &Stores,
    breakers: steadfast_circuit_breaker::Registry,
) -> Result<Services, StartupError> {
    let registry = Registry::new();
    let echo = if config.echo_services.is_empty() {
        None
    } else {
        Some(
            crate::echo::start()
                .await
                .map_err(|e| setup("echo downstream")(e.to_string()))?,
        )
    };
    for s in &config.services {
        let endpoints: Vec<String> = match (&echo, s.endpoints.is_empty()) {
            (Some(base), true) => vec![format!("{base}/{}", s.name)],
            _ => s.endpoints.clone(),
        };
        let service = s
            .registry_config(endpoints)
            .map_err(setup("service registry"))?;
        registry
            .register(service)
            .map_err(|e| setup("service registry")(e.to_string()))?;
    }
    let graph_breaker = breakers.get_or_create(graph::BREAKER, Preset::Standard);
    // No redirects: a 3xx from a downstream or the Graph API is an error of its own
    // (`downstream_redirect`, `graph_redirect`). Followed, a 307 re-POSTs the user's phone
    // number, text and history (or the reply and the bearer token) to any host it names.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| setup("http client")(e.to_string()))?;
    let graph = GraphClient::new(
        http.clone(),
        config.whatsapp.graph_api_url.clone(),
        config.whatsapp.access_token.clone(),
        config.whatsapp.graph_timeout,
        graph_breaker,
    );
    let actions = crate::actions::Actions::new(config, stores.sagas.clone(), &http, &breakers)
        .map_err(setup("reply actions"))?;
    Ok(Services {
        config: config.clone(),
        router: config.keyword_router(),
        registry,
        breakers,
        conversations: crate::worker::conversation::conversations(stores.snapshots.clone()),
        graph,
        http,
        sender_locks: crate::worker::SenderLocks::default(),
        clock: Arc::new(steadfast_retry::SystemClock),
        actions,
    })
}

/// A built service: its state, router and background tasks.
pub struct App {
    state: AppState,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// SQLite: held until the App is shut down or dropped, so no second instance shares the
    /// file meanwhile.
    instance: Option<SqliteInstanceLock>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("state", &self.state).finish()
    }
}

impl App {
    /// Builds every part from `config`: stores (connecting and migrating), router state, the
    /// worker and the sweeper (when `worker.enabled`), housekeeping.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let pool = if config.storage.backend == Backend::Postgres {
            Some(connect_postgres(&config).await?)
        } else {
            None
        };
        Self::build_with_pool(config, pool).await
    }

    /// As [`App::build`], on an existing pool (tests give a pool bound to their own schema).
    /// `pool` must be `Some` exactly when `config` runs on Postgres.
    pub async fn build_with_pool(
        config: Config,
        pool: Option<PgPool>,
    ) -> Result<Self, StartupError> {
        let config = Arc::new(config);
        let metrics = crate::metrics::install();
        let mut stores = open_stores(&config, pool).await?;
        let instance = stores.instance.take();
        if stores.kind != "memory" && config.whatsapp.access_token.is_none() {
            tracing::warn!("WHATSAPP_ACCESS_TOKEN is not set: replies are logged, not sent");
        }
        let fast_path = stores
            .fast_path
            .clone()
            .map(|s| Deduplicator::new(s, config.storage.dedup_window));
        let breakers = steadfast_circuit_breaker::Registry::new();
        let fast_path_breaker = fast_path.as_ref().map(|_| {
            breakers.get_or_create(
                crate::ingest::FAST_PATH_BREAKER,
                Preset::Custom(crate::ingest::fast_path_breaker_config()),
            )
        });
        let ingestor = Ingestor::new(
            stores.queue.clone(),
            config.storage.queue_name.clone(),
            fast_path,
            fast_path_breaker,
        );
        let services = Arc::new(build_services(&config, &stores, breakers).await?);
        let limiter = IpRateLimiter::new(
            config.rate_limit.per_minute,
            config.rate_limit.burst,
            config
                .http
                .trust_forwarded_for
                .then_some(config.http.trusted_proxy_hops),
        );
        let checks =
            crate::checks::Checks::new(ingestor.clone(), config.storage.queue_name.clone());
        // Once before serving, so the first /health and /metrics are already right.
        checks.refresh_all().await;
        let state = AppState {
            verifier: Verifier::new(config.whatsapp.app_secret.expose().as_bytes()),
            checks: checks.clone(),
            ingestor,
            limiter: limiter.clone(),
            metrics: metrics.clone(),
            store_kind: stores.kind,
            services: Some(services.clone()),
            config: config.clone(),
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(housekeeping(
            limiter,
            metrics,
            shutdown_rx.clone(),
        ))];
        tasks.push(tokio::spawn(checks.run(shutdown_rx.clone())));
        tasks.push(tokio::spawn(crate::retention::run(
            crate::retention::Retained {
                queue: stores.queue.clone(),
                done_retention: config.storage.dedup_window,
                conversations: stores.snapshots.clone(),
                conversation_retention: config.conversation.retention,
            },
            shutdown_rx.clone(),
        )));
        if config.worker.enabled {
            let worker = Worker::builder(stores.queue.clone(), config.storage.queue_name.clone())
                .concurrency(config.worker.concurrency)
                .lease(config.worker.lease)
                .poll_interval(config.worker.poll_interval)
                .shutdown_timeout(config.http.shutdown_grace)
                .store_timeout(config.storage.store_timeout)
                .hooks(Arc::new(MetricsHooks))
                // Each attempt continues the trace of the delivery that queued the message.
                .on_span(|m, span| {
                    crate::telemetry::propagation::continue_from_carrier(
                        span,
                        m.trace_context.as_deref(),
                    );
                })
                .build()
                .map_err(|e| setup("worker")(e.to_string()))?;
            let handler_services = services.clone();
            let mut stop = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                let report = worker
                    .run(
                        move |m| {
                            let s = handler_services.clone();
                            async move { s.handle(m).await }
                        },
                        async move {
                            let _ = stop.wait_for(|s| *s).await;
                        },
                    )
                    .await;
                tracing::info!(
                    acked = report.acked,
                    retried = report.retried,
                    dead = report.dead,
                    "worker stopped"
                );
            }));
            tasks.push(tokio::spawn(sweeper(
                services.clone(),
                config.conversation.sweep_interval,
                shutdown_rx.clone(),
            )));
            if let Some(runner) = services.actions.runner() {
                // Carries on the sagas of an instance that died, and the ones an operator
                // retried; on shutdown it lets running ones finish within its grace, then
                // gives their leases back.
                let mut stop = shutdown_rx.clone();
                let recovery = runner.recovery();
                tasks.push(tokio::spawn(async move {
                    let report = recovery
                        .run(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                        .await;
                    tracing::info!(
                        resumed = report.resumed,
                        finished = report.finished,
                        parked = report.parked,
                        cancelled = report.cancelled,
                        "saga recovery stopped"
                    );
                }));
            }
        }
        tasks.push(tokio::spawn(parked_sagas(
            services.actions.operator().clone(),
            config.storage.store_timeout,
            shutdown_rx.clone(),
        )));
        Ok(Self {
            state,
            shutdown_tx,
            tasks,
            instance,
        })
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The worker side.
    pub fn services(&self) -> &Arc<Services> {
        self.state
            .services
            .as_ref()
            .expect("App::build always assembles the worker side")
    }

    /// The HTTP router (for in-process tests and for [`App::serve`]).
    pub fn router(&self) -> Router {
        crate::http::router(self.state.clone())
    }

    /// Serves HTTP on `listener` until `signal` resolves, then drains in-flight requests (up to
    /// the configured grace) and stops the worker (which finishes or releases what it holds).
    /// Every route is on `listener`; see [`App::serve_split`] for a separate ops listener.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_split(listener, None, signal).await
    }

    /// As [`App::serve`], with `/metrics` and `/admin` on `ops` only when it is given (the
    /// `ops_listen` address); `/health` answers on both. Both listeners have the connection
    /// limits of `[http]` ([`crate::http::server`]), each its own connection cap, and stop
    /// together.
    pub async fn serve_split(
        self,
        listener: TcpListener,
        ops: Option<TcpListener>,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.config.http.shutdown_grace;
        let limits = crate::http::limits(&self.state.config.http);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut servers = JoinSet::new();
        match ops {
            None => {
                servers.spawn(server::serve(listener, self.router(), limits, stop_rx));
            }
            Some(ops) => {
                let state = self.state.clone();
                servers.spawn(server::serve(
                    listener,
                    crate::http::public_router(state.clone()),
                    limits,
                    stop_rx.clone(),
                ));
                servers.spawn(server::serve(
                    ops,
                    crate::http::ops_router(state),
                    limits,
                    stop_rx,
                ));
            }
        }
        signal.await;
        tracing::info!("shutdown: no new connections; draining in-flight requests");
        let _ = stop_tx.send(true);
        // The worker stops claiming now and drains alongside the HTTP requests.
        let _ = self.shutdown_tx.send(true);
        let mut result = Ok(());
        let drained = tokio::time::timeout(grace, async {
            while let Some(joined) = servers.join_next().await {
                if let Err(e) = joined {
                    result = Err(std::io::Error::other(e));
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "shutdown grace elapsed with requests still open; closing them"
            );
            // Dropping the servers drops their connections.
            drop(servers);
        }
        self.shutdown().await;
        result
    }

    /// Stops the background tasks: the worker stops claiming, waits for its in-flight
    /// messages (up to the grace) and releases the rest to the queue.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(s) = &self.state.services {
            s.registry.shutdown();
        }
        // Only now that nothing writes any more may another instance take the file.
        drop(self.instance);
        tracing::info!("shutdown complete");
    }
}

/// Fires conversation timeouts periodically.
async fn sweeper(services: Arc<Services>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = services.sweep(services.now()).await {
                    tracing::warn!(error = %e, "conversation sweep failed");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Counts the parked sagas for `webhook_sagas_parked`, every [`crate::checks::STATS_EVERY`]:
/// a gauge read from memory, never a store query per scrape.
async fn parked_sagas(
    operator: steadfast_saga::Operator,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(crate::checks::STATS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => crate::actions::refresh_parked(&operator, timeout).await,
            _ = shutdown.changed() => return,
        }
    }
}

/// Periodic upkeep: forget idle rate-limit buckets, drain histogram buffers.
async fn housekeeping(
    limiter: IpRateLimiter,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                limiter.retain_recent();
                metrics.run_upkeep();
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool's connections carry the statement timeout, and Postgres enforces it.
    #[tokio::test]
    async fn pool_connections_carry_the_statement_timeout() {
        // Skips (or fails in CI) as every Postgres test does when the server is unreachable.
        let Some(_schema) = steadfast_testkit::postgres().await else {
            return;
        };
        let url = steadfast_testkit::database_url();
        let pool = connect_url(&url, 1, Some(Duration::from_millis(1500)))
            .await
            .unwrap();
        let shown: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(shown, "1500ms");
        let err = sqlx::query("SELECT pg_sleep(3)")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(
            err.as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|c| c == "57014"),
            "query_canceled: {err}"
        );
        let plain = connect_url(&url, 1, None).await.unwrap();
        let shown: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(&plain)
            .await
            .unwrap();
        assert_eq!(shown, "0", "the migrate pool has none");
    }
}
