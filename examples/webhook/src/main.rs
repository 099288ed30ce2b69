//! The `steadfast-webhook` binary: `serve` (default), `worker`, `migrate`, `check-config`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use steadfast_webhook::assemble::{App, bind};
use steadfast_webhook::config::{self, Backend, Config, Overrides, TelemetrySettings};
use steadfast_webhook::telemetry;

// mimalloc instead of glibc malloc, for this binary only (the library stays allocator-agnostic):
// `perf record` on the in-memory demo under `steadfast-loadgen` load put glibc malloc/free at
// ~35 % of the service's samples (many small per-message allocations: JSON, headers, snapshots,
// spread across tokio worker threads). See BENCHMARKS.md, "webhook: in-memory mode vs bare axum".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The reference WhatsApp Cloud API webhook service.
///
/// With no DATABASE_URL it runs on a SQLite file (storage.sqlite_path, default
/// ./steadfast-data/webhook.db): durable, single instance; secrets not configured are generated
/// and printed once, services without endpoints get a built-in echo downstream, replies are
/// logged instead of sent. `--demo` runs on in-memory stores instead (NOT durable).
#[derive(Debug, Parser)]
#[command(name = "steadfast-webhook", version)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "STEADFAST_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides `listen` and LISTEN_ADDR).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Do not run the queue worker in this process (ingestion only).
    #[arg(long, global = true)]
    no_worker: bool,
    /// Messages the worker handles at once.
    #[arg(long, global = true)]
    worker_concurrency: Option<usize>,
    /// Requests per minute per client IP on /webhook (0 disables).
    #[arg(long, global = true)]
    rate_limit_per_minute: Option<u32>,
    /// In-memory stores: nothing is durable (storage.backend = "memory").
    #[arg(long, global = true)]
    demo: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Receive webhooks and run the worker (the default).
    Serve,
    /// Run only the queue worker (plus /health and /metrics on the listen address).
    Worker,
    /// Apply the Postgres migrations and exit.
    Migrate,
    /// Validate the configuration and exit.
    CheckConfig,
}

fn load(cli: &Cli) -> Result<Config, String> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let overrides = Overrides {
        listen: cli.listen.clone(),
        no_worker: cli.no_worker,
        worker_concurrency: cli.worker_concurrency,
        rate_limit_per_minute: cli.rate_limit_per_minute,
        demo: cli.demo,
    };
    Config::load(cli.config.as_deref(), &env, &overrides).map_err(|e| e.to_string())
}

/// What the service runs on, said at start-up; loud for memory, and whenever something was
/// generated (shown once, never logged).
fn print_banner(config: &Config) {
    let line = "=".repeat(78);
    match config.storage.backend {
        Backend::Memory => {
            eprintln!("{line}");
            eprintln!(" DEMO MODE: in-memory queue, dead letters and conversations.");
            eprintln!(" NOTHING IS DURABLE: a restart loses every queued message.");
            eprintln!(" Drop --demo for the durable SQLite default; set DATABASE_URL (and");
            eprintln!(" REDIS_URL) for the Postgres + Redis setup of several instances.");
        }
        Backend::Sqlite => {
            if config.generated.is_empty() && config.echo_services.is_empty() {
                eprintln!(
                    "storage: SQLite at {} (durable, single instance)",
                    config.storage.sqlite_path.display()
                );
                return;
            }
            eprintln!("{line}");
            eprintln!(
                " storage: SQLite at {} (durable, single instance)",
                config.storage.sqlite_path.display()
            );
            eprintln!(" Set DATABASE_URL for Postgres (several instances, HA).");
        }
        Backend::Postgres => return,
    }
    if !config.echo_services.is_empty() {
        eprintln!(
            " Services without endpoints answered by the built-in echo downstream: {}",
            config.echo_services.join(", ")
        );
    }
    if !config.generated.is_empty() {
        eprintln!();
        eprintln!(" Generated for this run (shown once, not logged; set them to keep them):");
        for (key, value) in &config.generated {
            eprintln!("   {key:<22} = {value}");
        }
    }
    eprintln!();
    eprintln!(" Listening on http://{}", config.listen);
    if let Some(ops) = config.ops_listen {
        eprintln!(" /metrics and /admin on http://{ops} only (/health on both)");
    }
    eprintln!("{line}");
}

async fn migrate(cli: &Cli) -> ExitCode {
    let env: HashMap<String, String> = std::env::vars().collect();
    let url = match Config::database_url(cli.config.as_deref(), &env) {
        Ok(Some(url)) => url,
        Ok(None) => {
            eprintln!(
                "steadfast-webhook: migrate needs DATABASE_URL (or storage.database_url in the config)"
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("steadfast-webhook: {e}");
            return ExitCode::from(2);
        }
    };
    match steadfast_webhook::assemble::migrate(url.expose()).await {
        Ok(()) => {
            println!("migrations applied");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("steadfast-webhook: {e}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::Migrate)) {
        let _logs = telemetry::init(&TelemetrySettings::off(config::SERVICE_NAME));
        return migrate(&cli).await;
    }
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("steadfast-webhook: {e}");
            return ExitCode::from(2);
        }
    };
    // After the config: `[telemetry]` says whether spans are exported.
    let telemetry = match telemetry::init(&config.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("steadfast-webhook: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(endpoint) = &config.telemetry.traces_endpoint {
        tracing::info!(
            endpoint = %endpoint,
            sample_ratio = config.telemetry.sample_ratio,
            "exporting traces over OTLP/HTTP"
        );
    }
    let command = cli.command.unwrap_or(Command::Serve);
    match command {
        Command::CheckConfig => {
            println!("configuration OK ({} services)", config.services.len());
            return ExitCode::SUCCESS;
        }
        Command::Worker | Command::Serve | Command::Migrate => {}
    }
    print_banner(&config);
    match config.storage.backend {
        Backend::Memory => tracing::warn!("demo mode: in-memory stores, nothing is durable"),
        Backend::Sqlite => tracing::info!(
            path = %config.storage.sqlite_path.display(),
            "storage: SQLite, durable, single instance"
        ),
        Backend::Postgres => tracing::info!("storage: Postgres"),
    }
    let mut config = config;
    if matches!(command, Command::Worker) {
        config.worker.enabled = true;
        config.ingest_enabled = false;
    }
    let listen = config.listen;
    let ops_listen = config.ops_listen;
    let app = match App::build(config).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("steadfast-webhook: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("steadfast-webhook: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ops = match ops_listen {
        Some(addr) => match bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("steadfast-webhook: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    // The bound addresses, not the configured ones: port 0 picks a free port.
    let bound = |l: &tokio::net::TcpListener, configured| l.local_addr().unwrap_or(configured);
    match (&ops, ops_listen) {
        (Some(l), Some(addr)) => tracing::info!(
            listen = %bound(&listener, listen),
            ops_listen = %bound(l, addr),
            "listening; /metrics and /admin on ops_listen only"
        ),
        _ => tracing::info!(listen = %bound(&listener, listen), "listening"),
    }
    let served = app
        .serve_split(listener, ops, steadfast_service_kit::shutdown::signal())
        .await;
    // The last spans (the shutdown's own included) go out before the process ends.
    telemetry.shutdown().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("steadfast-webhook: {e}");
            ExitCode::FAILURE
        }
    }
}
