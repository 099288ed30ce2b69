//! Start-up: turns a [`Config`] into running parts (stores, router, background tasks) and
//! shuts them down in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use steadfast_dlq::{MemoryQueue, QueueStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::AppState;
use crate::config::Config;
use crate::ingest::Ingestor;
use crate::ratelimit::IpRateLimiter;
use crate::signature::Verifier;

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
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A built service: its state, router and background tasks.
pub struct App {
    state: AppState,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("state", &self.state).finish()
    }
}

impl App {
    /// Builds every part from `config`: stores (connecting and migrating), router state and
    /// background tasks.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let config = Arc::new(config);
        let metrics = crate::metrics::install();
        let (queue, store_kind): (Arc<dyn QueueStore>, &'static str) =
            if config.storage.database_url.is_some() {
                return Err(StartupError::Store {
                    what: "postgres",
                    message: "the Postgres queue is not wired in yet".into(),
                });
            } else {
                (Arc::new(MemoryQueue::new()), "memory")
            };
        let ingestor = Ingestor::new(queue, config.storage.queue_name.clone(), None);
        let limiter = IpRateLimiter::new(
            config.rate_limit.per_minute,
            config.rate_limit.burst,
            config.http.trust_forwarded_for,
        );
        let state = AppState {
            verifier: Verifier::new(config.whatsapp.app_secret.expose().as_bytes()),
            ingestor,
            limiter: limiter.clone(),
            metrics: metrics.clone(),
            store_kind,
            config,
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let tasks = vec![tokio::spawn(housekeeping(
            limiter,
            metrics,
            shutdown_rx.clone(),
        ))];
        Ok(Self {
            state,
            shutdown_tx,
            tasks,
        })
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The HTTP router (for in-process tests and for [`App::serve`]).
    pub fn router(&self) -> Router {
        crate::http::router(self.state.clone())
    }

    /// Serves HTTP on `listener` until `signal` resolves, then drains in-flight requests (up to
    /// the configured grace) and stops the background tasks.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.state.config.http.shutdown_grace;
        let router = self.router();
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            signal.await;
            tracing::info!("shutdown: no new connections; draining in-flight requests");
            let _ = stop_tx.send(true);
        });
        let server = tokio::spawn(async move { server.await });
        // Wait for the signal, then give in-flight requests the grace period.
        let _ = stop_rx.wait_for(|s| *s).await;
        let result = match tokio::time::timeout(grace, server).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(std::io::Error::other(join)),
            Err(_) => {
                tracing::warn!(
                    grace_ms = grace.as_millis() as u64,
                    "shutdown grace elapsed with requests still open"
                );
                Ok(())
            }
        };
        self.shutdown().await;
        result
    }

    /// Stops the background tasks (the worker finishes or releases what it holds).
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        tracing::info!("shutdown complete");
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
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}

/// Applies the Postgres migrations of every store the service uses.
pub async fn migrate(config: &Config) -> Result<(), StartupError> {
    if config.storage.database_url.is_none() {
        return Err(StartupError::Store {
            what: "migrate",
            message: "DATABASE_URL (storage.database_url) is not set: nothing to migrate".into(),
        });
    }
    Err(StartupError::Store {
        what: "postgres",
        message: "the Postgres stores are not wired in yet".into(),
    })
}
