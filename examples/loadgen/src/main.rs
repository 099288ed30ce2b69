//! `steadfast-loadgen`: drive the webhook with signed real-shaped payloads and check that every
//! accepted message reached the downstream exactly once. See the README for the commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use axum::http::StatusCode;
use clap::{Args, Parser, Subcommand};
use steadfast_loadgen::duration::parse_duration;
use steadfast_loadgen::{
    ConfigExtras, Error, Fakes, FakesConfig, FakesMode, GeneratorConfig, LoadConfig, Mix,
    RunConfig, webhook_config_toml,
};

#[derive(Debug, Parser)]
#[command(name = "steadfast-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send load to the webhook, then report accepted vs delivered per message id.
    /// Exit status: 0 ok, 1 messages lost (or, with --strict, never accepted), 2 usage or start-up error.
    Run(Box<RunArgs>),
    /// Run only the fake downstream and fake Graph API until interrupted.
    Fakes(FakesArgs),
    /// A bare axum handler that reads the body and answers 200 (the throughput baseline).
    BaselineServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
    },
    /// An OTLP/HTTP collector that accepts every trace export and drops it (to measure the
    /// webhook's cost of tracing: point OTEL_EXPORTER_OTLP_ENDPOINT at it). Prints what it
    /// was sent when interrupted.
    OtlpSink {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4318")]
        listen: SocketAddr,
    },
}

#[derive(Debug, Args)]
struct FakeListen {
    /// Fake downstream listen address (port 0 = a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    downstream_listen: SocketAddr,
    /// Fake Graph API listen address (port 0 = a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    graph_listen: SocketAddr,
    /// Status the downstream answers while failing.
    #[arg(long, default_value_t = 503)]
    downstream_fail_status: u16,
    /// Delay before every downstream answer (e.g. 20ms).
    #[arg(long, value_parser = parse_duration, default_value = "0ms")]
    downstream_delay: Duration,
}

impl FakeListen {
    fn config(&self) -> Result<FakesConfig, Error> {
        let fail_status = StatusCode::from_u16(self.downstream_fail_status)
            .ok()
            .filter(|s| !s.is_success())
            .ok_or_else(|| Error::Config {
                option: "downstream-fail-status",
                problem: "must be a non-2xx HTTP status".into(),
            })?;
        Ok(FakesConfig {
            downstream_listen: self.downstream_listen,
            graph_listen: self.graph_listen,
            fail_status,
            downstream_delay: self.downstream_delay,
        })
    }
}

#[derive(Debug, Args)]
struct FakesArgs {
    #[command(flatten)]
    listen: FakeListen,
    /// App secret to write into the printed config.
    #[arg(
        long,
        env = "WHATSAPP_APP_SECRET",
        default_value = "loadgen-app-secret"
    )]
    app_secret: String,
    /// Print the webhook config pointing at the fakes.
    #[arg(long)]
    print_config: bool,
    /// Write that config to a file.
    #[arg(long)]
    config_out: Option<PathBuf>,
    /// Add `[rate_limit] per_minute = N` to that config (all load comes from one IP).
    #[arg(long)]
    webhook_rate_limit: Option<u32>,
    /// Give every service in that config a breaker table open for N seconds (instead of the
    /// 60 s / 120 s presets), so a drill sees the half-open recovery within its run.
    #[arg(long)]
    breaker_open_seconds: Option<u64>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Webhook base URL (`/webhook` is appended) or full URL; repeat to spread load over instances.
    #[arg(long, required = true)]
    target: Vec<String>,
    /// Sends started per second (0 = as fast as --concurrency allows).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Pace by messages instead: new messages per second (a batch counts its messages; status
    /// updates and duplicates carry none). Overrides --rate.
    #[arg(long)]
    messages_per_sec: Option<f64>,
    /// Stop starting sends once this many new messages were sent (or --duration ends).
    #[arg(long)]
    max_messages: Option<u64>,
    /// How long new sends are started (e.g. 30s, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Most requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Share of sends that are exact re-sends of a recent payload (0..=1).
    #[arg(long, default_value_t = 0.05)]
    duplicate_share: f64,
    /// Stop retrying a send this long after its first attempt.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    give_up_after: Duration,
    /// Timeout of one HTTP attempt.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    request_timeout: Duration,
    /// First retry delay (doubles each retry, with jitter).
    #[arg(long, value_parser = parse_duration, default_value = "200ms")]
    retry_initial: Duration,
    /// Cap on any retry delay, Retry-After included.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    retry_max_delay: Duration,
    /// App secret payloads are signed with.
    #[arg(
        long,
        env = "WHATSAPP_APP_SECRET",
        default_value = "loadgen-app-secret"
    )]
    app_secret: String,
    /// Payload kinds and weights.
    #[arg(long, default_value = "text=50,interactive=20,batch=20,status=10")]
    mix: String,
    /// Messages per batch payload (1..=1000).
    #[arg(long, default_value_t = 5)]
    batch_size: usize,
    /// Distinct senders.
    #[arg(long, default_value_t = 1000)]
    senders: u32,
    /// metadata.phone_number_id of the payloads.
    #[arg(long, default_value = "106540352242922")]
    phone_number_id: String,
    /// Seed of the random choices (ids stay unique regardless).
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    #[command(flatten)]
    listen: FakeListen,
    /// Use fakes already running (`steadfast-loadgen fakes`) at this downstream base URL.
    #[arg(long, conflicts_with = "downstream_url")]
    external_fakes: Option<String>,
    /// Start no fakes: the webhook calls this downstream (deliveries are then not checked).
    #[arg(long, requires = "graph_url")]
    downstream_url: Option<String>,
    /// Graph API URL for the printed config when --downstream-url is used.
    #[arg(long, requires = "downstream_url")]
    graph_url: Option<String>,
    /// Make the downstream fail 100% from this offset after load start...
    #[arg(long, value_parser = parse_duration, requires = "downstream_fail_until")]
    downstream_fail_from: Option<Duration>,
    /// ...until this offset.
    #[arg(long, value_parser = parse_duration, requires = "downstream_fail_from")]
    downstream_fail_until: Option<Duration>,
    /// Longest wait for deliveries after sending.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    drain_timeout: Duration,
    /// Extra wait after everything is delivered, to catch late duplicates.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    drain_settle: Duration,
    /// Poll each target's /health for up to this long before sending.
    #[arg(long, value_parser = parse_duration)]
    wait_ready: Option<Duration>,
    /// Print the webhook config pointing at the fakes before sending.
    #[arg(long)]
    print_config: bool,
    /// Write that config to a file before sending.
    #[arg(long)]
    config_out: Option<PathBuf>,
    /// Add `[rate_limit] per_minute = N` to that config (all load comes from one IP).
    #[arg(long)]
    webhook_rate_limit: Option<u32>,
    /// Write the report as JSON to this file (`-` for stdout).
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Progress line to stderr this often (0s = never).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    progress: Duration,
    /// Also fail (exit 1) when some messages were never accepted.
    #[arg(long)]
    strict: bool,
}

impl RunArgs {
    fn config(&self) -> Result<RunConfig, Error> {
        let mix: Mix = self.mix.parse()?;
        let mut b = LoadConfig::builder()
            .rate(self.rate)
            .messages_per_sec(self.messages_per_sec)
            .max_messages(self.max_messages)
            .duration(self.duration)
            .concurrency(self.concurrency)
            .duplicate_share(self.duplicate_share)
            .give_up_after(self.give_up_after)
            .request_timeout(self.request_timeout)
            .retry_backoff(self.retry_initial, self.retry_max_delay)
            .progress_every((!self.progress.is_zero()).then_some(self.progress))
            .generator(GeneratorConfig {
                app_secret: self.app_secret.clone(),
                senders: self.senders,
                batch_size: self.batch_size,
                mix,
                phone_number_id: self.phone_number_id.clone(),
                seed: self.seed,
            });
        for t in &self.target {
            b = b.target(t.clone());
        }
        let mut rc = RunConfig::new(b.build()?);
        rc.fakes = match (&self.external_fakes, &self.downstream_url, &self.graph_url) {
            (Some(url), _, _) => FakesMode::External(url.clone()),
            (None, Some(d), Some(g)) => FakesMode::Elsewhere {
                downstream_url: d.clone(),
                graph_url: g.clone(),
            },
            _ => FakesMode::Local(self.listen.config()?),
        };
        rc.downstream_fail_window = match (self.downstream_fail_from, self.downstream_fail_until) {
            (Some(from), Some(until)) if until > from => Some((from, until)),
            (Some(_), Some(_)) => {
                return Err(Error::Config {
                    option: "downstream-fail-until",
                    problem: "must be after --downstream-fail-from".into(),
                });
            }
            _ => None,
        };
        rc.drain_timeout = self.drain_timeout;
        rc.drain_settle = self.drain_settle;
        rc.wait_ready = self.wait_ready;
        rc.print_config = self.print_config;
        rc.config_out = self.config_out.clone();
        rc.strict = self.strict;
        rc.webhook_rate_limit = self.webhook_rate_limit;
        Ok(rc)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::select! {
        r = dispatch(cli.command) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted");
            return ExitCode::from(130);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Run(args) => {
            let config = args.config()?;
            let report = steadfast_loadgen::run(config).await?;
            println!("{report}");
            if let Some(path) = &args.report_json {
                let json = serde_json::to_string_pretty(&report).expect("the report serializes");
                if path.as_os_str() == "-" {
                    println!("{json}");
                } else {
                    std::fs::write(path, json + "\n").map_err(|source| Error::Write {
                        path: path.display().to_string(),
                        source,
                    })?;
                }
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Fakes(args) => {
            let fakes = Fakes::start(args.listen.config()?).await?;
            if args.breaker_open_seconds == Some(0) {
                return Err(Error::Config {
                    option: "breaker-open-seconds",
                    problem: "must be at least 1".into(),
                });
            }
            let toml = webhook_config_toml(
                &fakes.downstream_url(),
                &fakes.graph_url(),
                &args.app_secret,
                &ConfigExtras {
                    rate_limit_per_minute: args.webhook_rate_limit,
                    breaker_open_seconds: args.breaker_open_seconds,
                },
            );
            if args.print_config {
                println!("{toml}");
            }
            if let Some(path) = &args.config_out {
                std::fs::write(path, &toml).map_err(|source| Error::Write {
                    path: path.display().to_string(),
                    source,
                })?;
            }
            eprintln!(
                "fakes up: downstream {} graph {} (GET /_stats, /_stats/deliveries; POST /_control/fail|recover|reset)",
                fakes.downstream_url(),
                fakes.graph_url()
            );
            wait_for_termination().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::BaselineServer { listen } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| Error::Bind {
                    addr: listen,
                    source,
                })?;
            eprintln!(
                "baseline server on http://{}",
                listener.local_addr().unwrap_or(listen)
            );
            tokio::select! {
                r = steadfast_loadgen::serve_baseline(listener) => {
                    r.map_err(|source| Error::Bind { addr: listen, source })?;
                }
                () = wait_for_termination() => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::OtlpSink { listen } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| Error::Bind {
                    addr: listen,
                    source,
                })?;
            eprintln!(
                "OTLP sink on http://{}",
                listener.local_addr().unwrap_or(listen)
            );
            let stats = std::sync::Arc::new(steadfast_loadgen::SinkStats::default());
            tokio::select! {
                r = steadfast_loadgen::serve_otlp_sink(listener, stats.clone()) => {
                    r.map_err(|source| Error::Bind { addr: listen, source })?;
                }
                () = wait_for_termination() => {}
            }
            println!(
                "otlp sink: {} export requests, {} bytes",
                stats.requests.load(std::sync::atomic::Ordering::Relaxed),
                stats.bytes.load(std::sync::atomic::Ordering::Relaxed)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Ctrl-C or SIGTERM (what a drill script sends).
async fn wait_for_termination() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
