//! Wiring: the stores (chosen in ONE place, [`open_stores`]), the payout saga runner, the
//! callback worker, the background checks, the fake provider of demo mode, and the server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::SqlitePool;
use steadfast_circuit_breaker::CircuitBreaker;
use steadfast_dlq::{
    MemoryQueue, PostgresQueue, Queue, QueueConfig, SqliteInstanceLock, SqliteQueue, Worker,
};
use steadfast_idempotency::{
    Config as IdempotencyConfig, Idempotency, IdempotencyStore, MemoryStore, PostgresStore,
    RedisStore, SqliteStore,
};
use steadfast_retry::{Jitter, RetryPolicy};
use steadfast_saga::{
    MemorySagaStore, Operator, PostgresSagaStore, RunnerConfig, SagaRunner, SagaStore,
    SqliteSagaStore,
};
use steadfast_service_kit::http::server::{Limits, serve};
use steadfast_service_kit::ratelimit::IpRateLimiter;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::AppState;
use crate::callback::{CALLBACK_QUEUE, apply};
use crate::checks::Checks;
use crate::config::Backend;
use crate::config::Config;
use crate::fake_provider::FakeProvider;
use crate::http::Extras;
use crate::ledger::{Ledger, MemoryLedger, PostgresLedger, SqliteLedger};
use crate::payout::{PayoutInput, PayoutService, PayoutTuning, ProviderClient, definition};
use crate::signature::Signer;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A store could not be opened or migrated: check the URL and that the server runs.
    #[error("{what}: {message}")]
    Store {
        /// Which store.
        what: &'static str,
        /// What failed.
        message: String,
    },
    /// A component refused its settings (a bug in the defaults, or in a test's options).
    #[error("cannot set up {what}: {message}")]
    Setup {
        /// Which component.
        what: &'static str,
        /// Its error.
        message: String,
    },
    /// The listen address could not be bound: is another process on it?
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

fn setup(what: &'static str) -> impl Fn(String) -> StartupError {
    move |message| StartupError::Setup { what, message }
}

fn store(what: &'static str) -> impl Fn(String) -> StartupError {
    move |message| StartupError::Store { what, message }
}

/// Behaviour that is not configuration: timings tests and drills shorten. [`Default`] is
/// production's.
#[derive(Debug, Clone)]
pub struct Options {
    /// The payout saga's policies and breaker.
    pub tuning: PayoutTuning,
    /// Saga lease: a dead process's payouts are resumed this long after its last write.
    pub saga_lease: Duration,
    /// How often the saga recovery loop looks for lapsed leases.
    pub saga_poll: Duration,
    /// How often the callback worker polls an idle queue (Postgres also wakes it by NOTIFY).
    pub worker_poll: Duration,
    /// Where demo mode's fake provider listens (port 0: any free port).
    pub fake_provider_listen: SocketAddr,
    /// How long the fake provider waits before calling back.
    pub fake_provider_delay: Duration,
    /// Routes beyond the contract.
    pub extras: Extras,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tuning: PayoutTuning::default(),
            saga_lease: Duration::from_secs(30),
            saga_poll: Duration::from_secs(5),
            worker_poll: Duration::from_secs(1),
            fake_provider_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            fake_provider_delay: Duration::from_secs(1),
            extras: Extras::default(),
        }
    }
}

/// Every store the service uses.
#[derive(Clone)]
pub struct Stores {
    /// The ledger.
    pub ledger: Arc<dyn Ledger>,
    /// The callback queue.
    pub queue: Arc<dyn Queue>,
    /// The saga log.
    pub sagas: Arc<dyn SagaStore>,
    /// Idempotency records.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// `memory`, `sqlite` or `postgres`, for `/health`.
    pub kind: &'static str,
    /// SQLite only: this process's exclusive hold on the database file; keep a clone for as
    /// long as the stores are used.
    pub instance: Option<Arc<SqliteInstanceLock>>,
}

/// The callback queue's retry policy: a ledger that is down is retried for about an hour
/// (exponential from 1 s, capped at 5 minutes, 20 attempts) before the callback is parked.
fn queue_config() -> Result<QueueConfig, StartupError> {
    let policy = RetryPolicy::builder()
        .exponential(Duration::from_secs(1), 2.0)
        .max_delay(Duration::from_secs(300))
        .jitter(Jitter::Equal)
        .max_attempts(20)
        .build()
        .map_err(|e| setup("queue policy")(e.to_string()))?;
    QueueConfig::builder()
        .queue_policy(CALLBACK_QUEUE, policy)
        .remember_done(CALLBACK_QUEUE, true)
        .build()
        .map_err(|e| setup("queue config")(e.to_string()))
}

/// Connects to `url` with `pool_size` connections; a connection is waited for at most 1 s,
/// so a down database answers 503 quickly.
pub async fn connect(url: &str, pool_size: u32) -> Result<PgPool, StartupError> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| store("postgres")(e.to_string()))?;
    PgPoolOptions::new()
        .max_connections(pool_size)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(options)
        .await
        .map_err(|e| store("postgres")(format!("cannot connect: {e}")))
}

/// Applies every migration the service needs (the ledger's and the crates'); idempotent.
pub async fn migrate(pool: &PgPool) -> Result<(), StartupError> {
    PostgresLedger::migrate(pool)
        .await
        .map_err(|e| store("ledger")(e.to_string()))?;
    PostgresQueue::migrate(pool)
        .await
        .map_err(|e| store("callback queue")(e.to_string()))?;
    PostgresSagaStore::migrate(pool)
        .await
        .map_err(|e| store("sagas")(e.to_string()))?;
    PostgresStore::new(pool.clone())
        .migrate()
        .await
        .map_err(|e| store("idempotency")(e.to_string()))?;
    Ok(())
}

/// Applies the SQLite migrations of every store the service uses; idempotent.
pub async fn migrate_sqlite(pool: &SqlitePool) -> Result<(), StartupError> {
    SqliteLedger::migrate(pool)
        .await
        .map_err(|e| store("ledger")(e.to_string()))?;
    SqliteQueue::migrate(pool)
        .await
        .map_err(|e| store("callback queue")(e.to_string()))?;
    SqliteSagaStore::migrate(pool)
        .await
        .map_err(|e| store("sagas")(e.to_string()))?;
    SqliteStore::new(pool.clone())
        .migrate()
        .await
        .map_err(|e| store("idempotency")(e.to_string()))?;
    Ok(())
}

/// THE store choice, by `storage.backend`: the SQLite file `storage.sqlite_path` with nothing
/// configured (durable, single instance: a second process on the file is refused), Postgres
/// for everything durable when `DATABASE_URL` is set (or `pool` is given, as tests do), Redis
/// for idempotency records when `REDIS_URL` is set too; memory only with `--demo`.
pub async fn open_stores(config: &Config, pool: Option<PgPool>) -> Result<Stores, StartupError> {
    let qc = queue_config()?;
    match config.storage.backend {
        _ if pool.is_some() => {}
        Backend::Memory => {
            return Ok(Stores {
                ledger: Arc::new(MemoryLedger::new()),
                queue: Arc::new(MemoryQueue::with_config(qc)),
                sagas: Arc::new(MemorySagaStore::new()),
                idempotency: Arc::new(MemoryStore::new()),
                kind: "memory",
                instance: None,
            });
        }
        Backend::Sqlite => {
            let (pool, instance) = steadfast_service_kit::storage::sqlite_pool(
                &config.storage.sqlite_path,
                config.storage.pool_size,
            )
            .await
            .map_err(|e| match e {
                steadfast_service_kit::Error::Sqlite(message) => store("sqlite")(message),
                other => store("sqlite")(other.to_string()),
            })?;
            migrate_sqlite(&pool).await?;
            return Ok(Stores {
                ledger: Arc::new(SqliteLedger::new(pool.clone())),
                queue: Arc::new(SqliteQueue::with_config(pool.clone(), qc)),
                sagas: Arc::new(SqliteSagaStore::new(pool.clone())),
                // Durable records: a replayed Idempotency-Key must survive a restart.
                idempotency: Arc::new(SqliteStore::new(pool)),
                kind: "sqlite",
                instance: Some(Arc::new(instance)),
            });
        }
        Backend::Postgres => {}
    }
    let pool = match (pool, &config.storage.database_url) {
        (Some(pool), _) => pool,
        (None, Some(url)) => connect(url.expose(), config.storage.pool_size).await?,
        (None, None) => {
            return Err(store("postgres")(
                "storage.backend is postgres but DATABASE_URL is not set".into(),
            ));
        }
    };
    migrate(&pool).await?;
    let idempotency: Arc<dyn IdempotencyStore> = match &config.storage.redis_url {
        Some(url) => Arc::new(
            RedisStore::lazy(url.expose(), "steadfast-payments:")
                .map_err(|e| store("redis")(e.to_string()))?,
        ),
        None => Arc::new(PostgresStore::new(pool.clone())),
    };
    Ok(Stores {
        ledger: Arc::new(PostgresLedger::new(pool.clone())),
        queue: Arc::new(PostgresQueue::with_config(pool.clone(), qc)),
        sagas: Arc::new(PostgresSagaStore::new(pool)),
        idempotency,
        kind: "postgres",
        instance: None,
    })
}

/// The assembled service.
pub struct App {
    state: AppState,
    router: Router,
    runner: SagaRunner<PayoutInput>,
    options: Options,
    fake: Option<(FakeProvider, TcpListener)>,
    /// SQLite: held for the App's lifetime, so no second instance shares the file.
    _instance: Option<Arc<SqliteInstanceLock>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

/// A running service (see [`App::spawn`]).
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops gracefully and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl App {
    /// Assembles the service on the configured stores (or on `pool`).
    pub async fn build(
        config: Config,
        options: Options,
        pool: Option<PgPool>,
    ) -> Result<Self, StartupError> {
        let stores = open_stores(&config, pool).await?;
        let metrics = crate::metrics::install();

        // The provider: the configured API, or demo mode's fake on its own loopback port.
        let (api_url, fake) = match &config.momo.api_url {
            Some(url) => (url.clone(), None),
            None => {
                let listener = TcpListener::bind(options.fake_provider_listen)
                    .await
                    .map_err(|source| StartupError::Bind {
                        addr: options.fake_provider_listen,
                        source,
                    })?;
                let addr = listener
                    .local_addr()
                    .map_err(|e| setup("fake provider")(e.to_string()))?;
                let fake = FakeProvider::new(
                    config.momo.api_key.expose(),
                    config.momo.callback_secret.expose(),
                    options.fake_provider_delay,
                );
                (format!("http://{addr}"), Some((fake, listener)))
            }
        };
        let provider = ProviderClient::new(
            api_url,
            config.momo.api_key.clone(),
            config.momo.request_timeout,
            options.tuning.max_retry_after,
        )
        .map_err(|e| setup("provider client")(e.to_string()))?;
        let breaker = CircuitBreaker::named("momo-provider", options.tuning.breaker.clone());
        let saga = definition(
            stores.ledger.clone(),
            provider,
            breaker.clone(),
            &options.tuning,
        )
        .map_err(|e| setup("payout saga")(e.to_string()))?;
        let runner_config = RunnerConfig::builder()
            .owner(format!("payments-{}", uuid::Uuid::new_v4().simple()))
            .lease(options.saga_lease)
            .poll_interval(options.saga_poll)
            .build()
            .map_err(|e| setup("saga runner")(e.to_string()))?;
        let runner = SagaRunner::new(saga, stores.sagas.clone(), runner_config);

        let idempotency =
            Idempotency::new(stores.idempotency.clone(), IdempotencyConfig::default());
        let state = AppState {
            config: Arc::new(config.clone()),
            ledger: stores.ledger.clone(),
            payouts: PayoutService::new(runner.clone(), stores.ledger.clone()),
            sagas: Operator::new(stores.sagas.clone()),
            queue: stores.queue.clone(),
            signer: Signer::new(config.momo.callback_secret.expose().as_bytes()),
            limiter: IpRateLimiter::new(
                config.rate_limit.per_minute,
                config.rate_limit.burst,
                Some(config.momo.trusted_proxy_hops),
            ),
            checks: Checks::new(stores.ledger.clone(), stores.queue.clone(), stores.kind),
            metrics,
            provider_breaker: breaker,
        };
        let router = crate::http::router(state.clone(), idempotency, options.extras);
        Ok(App {
            state,
            router,
            runner,
            options,
            fake,
            _instance: stores.instance.clone(),
        })
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The router (for in-process tests).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Where demo mode's fake provider listens, if this process runs one.
    pub fn fake_address(&self) -> Option<SocketAddr> {
        self.fake.as_ref().and_then(|(_, l)| l.local_addr().ok())
    }

    /// Demo mode's fake provider, if this process runs one.
    pub fn fake_provider(&self) -> Option<&FakeProvider> {
        self.fake.as_ref().map(|(f, _)| f)
    }

    /// Serves on `listener` with the background work (callback worker, saga recovery,
    /// checks, the fake provider) until `shutdown` resolves, then stops gracefully.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let (stop, stopped) = watch::channel(false);
        let addr = listener.local_addr().ok();
        let App {
            state,
            router,
            runner,
            options,
            fake,
            _instance,
        } = self;
        if let (Some((fake, fake_listener)), Some(addr)) = (fake, addr) {
            fake.set_callback_url(format!("http://{addr}/momo/callback"));
            fake.spawn(fake_listener);
        }
        let checks = tokio::spawn(state.checks.clone().run(stopped.clone()));
        let recovery = runner.recovery().spawn();
        let payouts = state.payouts.clone();
        tokio::spawn(async move {
            match payouts.adopt_pending().await {
                Ok(n) => tracing::info!(pending = n, "pending payouts adopted"),
                Err(e) => tracing::error!(error = %e, "adopting pending payouts failed"),
            }
        });
        let limiter = state.limiter.clone();
        let mut limiter_stop = stopped.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(60)) => limiter.retain_recent(),
                    _ = limiter_stop.changed() => return,
                }
            }
        });
        let worker = match Worker::builder(state.queue.clone(), CALLBACK_QUEUE)
            .concurrency(8)
            .poll_interval(options.worker_poll)
            // Each attempt continues the trace of the callback that queued it.
            .on_span(|m, span| {
                steadfast_service_kit::telemetry::propagation::continue_from_carrier(
                    span,
                    m.trace_context.as_deref(),
                );
            })
            .build()
        {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "callback worker not started");
                None
            }
        };
        let ledger = state.ledger.clone();
        let mut worker_stop = stopped.clone();
        let worker_task = tokio::spawn(async move {
            let Some(worker) = worker else { return };
            let report = worker
                .run(
                    move |message| {
                        let ledger = ledger.clone();
                        async move {
                            let outcome = apply(&*ledger, &message).await;
                            let label = match &outcome {
                                steadfast_dlq::Outcome::Ack => "done",
                                steadfast_dlq::Outcome::Dead(_) => "dead",
                                _ => "retry",
                            };
                            metrics::counter!(crate::metrics::CALLBACK_WORKER, "outcome" => label)
                                .increment(1);
                            outcome
                        }
                    },
                    async move {
                        let _ = worker_stop.changed().await;
                    },
                )
                .await;
            tracing::info!(?report, "callback worker stopped");
        });
        let limits = Limits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
        };
        let server = serve(listener, router, limits, stopped.clone());
        tokio::pin!(server);
        tokio::select! {
            () = &mut server => {}
            () = shutdown => {
                let _ = stop.send(true);
                server.await;
            }
        }
        let _ = stop.send(true);
        let _ = worker_task.await;
        let _ = recovery.shutdown().await;
        let _ = checks.await;
    }

    /// Serves on `listener` on a spawned task; [`Running::stop`] stops it.
    pub fn spawn(self, listener: TcpListener) -> Result<Running, StartupError> {
        let addr = listener
            .local_addr()
            .map_err(|e| setup("listener")(e.to_string()))?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(self.serve(listener, async move {
            let _ = stopped.changed().await;
        }));
        Ok(Running { addr, stop, task })
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}
