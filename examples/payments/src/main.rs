//! The `steadfast-payments` binary: `serve` (default), `migrate`, `check-config`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use steadfast_payments::assemble::{App, Options, bind, connect, migrate};
use steadfast_payments::config::{Backend, Config, Overrides, TelemetrySettings};
use steadfast_payments::http::Extras;
use steadfast_service_kit::telemetry;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The reference wallet and mobile-money service.
///
/// With no DATABASE_URL it runs on a SQLite file (storage.sqlite_path, default
/// ./steadfast-data/payments.db): durable, single instance; tokens not configured are generated
/// and printed once, and a built-in fake mobile-money provider runs on a loopback port.
/// `--demo` runs on in-memory stores instead (NOT durable).
#[derive(Debug, Parser)]
#[command(name = "steadfast-payments", version)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides `listen` and LISTEN_ADDR).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// In-memory stores: nothing is durable (storage.backend = "memory").
    #[arg(long, global = true)]
    demo: bool,
    /// Where the fake provider listens when no provider is configured (default: a free
    /// loopback port).
    #[arg(long, global = true)]
    fake_provider_listen: Option<SocketAddr>,
    /// Mount `POST /bench/transfers`, a transfer without the idempotency layer, for
    /// `scripts/bench-payments` only.
    #[arg(long, global = true)]
    bench_route: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API, the callback webhook, the worker and the saga recovery (the default).
    Serve,
    /// Apply the Postgres migrations and exit.
    Migrate,
    /// Validate the configuration and exit.
    CheckConfig,
    /// Run only the fake mobile-money provider (drills): on `--listen`, calling back
    /// `--callback-url`, with MOMO_API_KEY and MOMO_CALLBACK_SECRET from the environment.
    FakeProvider {
        /// Where the service's callback endpoint is.
        #[arg(long)]
        callback_url: String,
        /// Milliseconds before calling back.
        #[arg(long, default_value_t = 1000)]
        delay_ms: u64,
    },
}

/// What the service runs on, said at start-up: loud for memory, and whenever something was
/// generated or faked (shown once, never logged).
fn banner(config: &Config, fake: Option<SocketAddr>) {
    let line = "=".repeat(78);
    match config.storage.backend {
        Backend::Memory => {
            eprintln!("{line}");
            eprintln!(" DEMO MODE: ledger, idempotency records, sagas and callbacks IN MEMORY.");
            eprintln!(" NOTHING IS DURABLE: a restart loses every balance. Drop --demo for the");
            eprintln!(" durable SQLite default; set DATABASE_URL for Postgres.");
        }
        Backend::Sqlite => {
            if config.generated.is_empty() && fake.is_none() {
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
    if !config.generated.is_empty() {
        eprintln!();
        eprintln!(" Generated for this run (shown once, not logged; set them to keep them):");
        for (key, value) in &config.generated {
            eprintln!("   {key:<22} = {value}");
        }
    }
    eprintln!();
    eprintln!(" Listening on http://{}", config.listen);
    eprintln!(
        " Ops console: http://{}/admin/ui (log in with admin.token)",
        config.listen
    );
    if let Some(addr) = fake {
        eprintln!(
            " Fake mobile-money provider on http://{addr} (msisdn ...0000 refused, ...1111 FAILED)"
        );
    }
    eprintln!("{line}");
}

async fn fake_provider(
    cli: &Cli,
    env: &HashMap<String, String>,
    callback_url: &str,
    delay_ms: u64,
) -> ExitCode {
    let (Some(key), Some(secret)) = (env.get("MOMO_API_KEY"), env.get("MOMO_CALLBACK_SECRET"))
    else {
        eprintln!("steadfast-payments: fake-provider needs MOMO_API_KEY and MOMO_CALLBACK_SECRET");
        return ExitCode::from(2);
    };
    let addr: SocketAddr = match cli.listen.as_deref().unwrap_or("127.0.0.1:0").parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("steadfast-payments: --listen is not an address");
            return ExitCode::from(2);
        }
    };
    let listener = match bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("steadfast-payments: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fake = steadfast_payments::fake_provider::FakeProvider::new(
        key,
        secret,
        std::time::Duration::from_millis(delay_ms),
    );
    fake.set_callback_url(callback_url);
    tracing::info!(listen = %listener.local_addr().unwrap_or(addr), "fake provider listening");
    let task = fake.spawn(listener);
    tokio::select! {
        () = steadfast_service_kit::shutdown::signal() => {}
        _ = task => {}
    }
    ExitCode::SUCCESS
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    if let Some(Command::FakeProvider {
        callback_url,
        delay_ms,
    }) = &cli.command
    {
        let _logs = telemetry::init(&TelemetrySettings::off("steadfast-payments-fake-provider"));
        return fake_provider(&cli, &env, callback_url, *delay_ms).await;
    }
    let overrides = Overrides {
        listen: cli.listen.clone(),
        demo: cli.demo,
    };
    let config = match Config::load(cli.config.as_deref(), &env, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("steadfast-payments: {e}");
            return ExitCode::from(2);
        }
    };
    // After the config: `[telemetry]` says whether spans are exported.
    let telemetry = match telemetry::init(&config.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("steadfast-payments: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("configuration OK");
            return ExitCode::SUCCESS;
        }
        Command::Migrate => {
            let Some(url) = &config.storage.database_url else {
                eprintln!("steadfast-payments: migrate needs DATABASE_URL");
                return ExitCode::from(2);
            };
            let done = match connect(url.expose(), 2).await {
                Ok(pool) => migrate(&pool).await,
                Err(e) => Err(e),
            };
            return match done {
                Ok(()) => {
                    println!("migrations applied");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("steadfast-payments: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Serve | Command::FakeProvider { .. } => {}
    }
    let mut options = Options {
        extras: Extras {
            bench_route: cli.bench_route,
        },
        ..Options::default()
    };
    if let Some(addr) = cli.fake_provider_listen {
        options.fake_provider_listen = addr;
    }
    let listen = config.listen;
    let listener = match bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("steadfast-payments: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = match App::build(config.clone(), options, None).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("steadfast-payments: {e}");
            return ExitCode::FAILURE;
        }
    };
    banner(&config, app.fake_address());
    match config.storage.backend {
        Backend::Memory => tracing::warn!("demo mode: in-memory stores, nothing is durable"),
        Backend::Sqlite => tracing::info!(
            path = %config.storage.sqlite_path.display(),
            "storage: SQLite, durable, single instance"
        ),
        Backend::Postgres => tracing::info!("storage: Postgres"),
    }
    tracing::info!(listen = %listener.local_addr().unwrap_or(listen), "listening");
    app.serve(listener, steadfast_service_kit::shutdown::signal())
        .await;
    // The last spans go out before the process ends.
    telemetry.shutdown().await;
    ExitCode::SUCCESS
}
