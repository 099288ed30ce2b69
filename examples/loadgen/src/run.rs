//! A whole run: fakes up, optional fault window, load, then waiting for deliveries and the report.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use tokio::time::Instant;

use crate::Error;
use crate::fakes::{Deliveries, FakeState, FakeStats, Fakes, FakesConfig};
use crate::load::{LoadConfig, run_load};
use crate::report::{DeliveryReport, Report, delivery_lag_secs};
use crate::webhook_config::{ConfigExtras, webhook_config_toml};

/// Where deliveries are observed.
#[derive(Debug, Clone)]
pub enum FakesMode {
    /// Start the fakes in this process.
    Local(FakesConfig),
    /// Use fakes already running (`steadfast-loadgen fakes`) at this downstream base URL.
    External(String),
    /// No fakes: the webhook calls these URLs; deliveries are not checked.
    Elsewhere {
        /// Downstream base URL for the printed config.
        downstream_url: String,
        /// Graph API URL for the printed config.
        graph_url: String,
    },
}

/// Settings of [`run`] beyond the load itself.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The load.
    pub load: LoadConfig,
    /// Where deliveries are observed.
    pub fakes: FakesMode,
    /// Longest wait for every accepted id to be delivered after sending ends (default 30 s).
    pub drain_timeout: Duration,
    /// Extra wait once everything is delivered, to catch late duplicates (default 1 s).
    pub drain_settle: Duration,
    /// Make the downstream fail 100 % from the first to the second offset after load start.
    pub downstream_fail_window: Option<(Duration, Duration)>,
    /// Poll each target's `/health` for up to this long before sending (default: don't wait).
    pub wait_ready: Option<Duration>,
    /// Print the webhook config for the fakes to stdout before sending.
    pub print_config: bool,
    /// Also write that config to this file.
    pub config_out: Option<PathBuf>,
    /// Count never-accepted messages as a failure too.
    pub strict: bool,
    /// Add `[rate_limit] per_minute = N` to the printed config.
    pub webhook_rate_limit: Option<u32>,
}

impl RunConfig {
    /// Defaults around `load`: local fakes on free ports, 30 s drain, 1 s settle, no fault.
    pub fn new(load: LoadConfig) -> Self {
        RunConfig {
            load,
            fakes: FakesMode::Local(FakesConfig::default()),
            drain_timeout: Duration::from_secs(30),
            drain_settle: Duration::from_secs(1),
            downstream_fail_window: None,
            wait_ready: None,
            print_config: false,
            config_out: None,
            strict: false,
            webhook_rate_limit: None,
        }
    }
}

/// Reads deliveries and flips the failing switch, locally or over HTTP.
#[derive(Debug, Clone)]
enum Source {
    Local(FakeState),
    External {
        base: String,
        client: reqwest::Client,
    },
}

impl Source {
    async fn stats(&self) -> Result<FakeStats, Error> {
        match self {
            Source::Local(s) => Ok(s.stats()),
            Source::External { base, client } => get_json(client, &format!("{base}/_stats")).await,
        }
    }

    async fn deliveries(&self) -> Result<HashMap<String, u32>, Error> {
        match self {
            Source::Local(s) => Ok(s.deliveries()),
            Source::External { base, client } => {
                let d: Deliveries = get_json(client, &format!("{base}/_stats/deliveries")).await?;
                Ok(d.deliveries)
            }
        }
    }

    async fn set_failing(&self, failing: bool) -> Result<(), Error> {
        match self {
            Source::Local(s) => {
                s.set_failing(failing);
                Ok(())
            }
            Source::External { base, client } => {
                let url = format!(
                    "{base}/_control/{}",
                    if failing { "fail" } else { "recover" }
                );
                let r = client
                    .post(&url)
                    .send()
                    .await
                    .map_err(|e| external(&url, e))?;
                r.error_for_status().map_err(|e| external(&url, e))?;
                Ok(())
            }
        }
    }
}

fn external(url: &str, e: impl std::fmt::Display) -> Error {
    Error::ExternalFakes {
        url: url.to_owned(),
        problem: e.to_string(),
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, Error> {
    let r = client.get(url).send().await.map_err(|e| external(url, e))?;
    let r = r.error_for_status().map_err(|e| external(url, e))?;
    r.json().await.map_err(|e| external(url, e))
}

/// Runs everything and returns the report (the caller decides the exit code from `report.ok`).
pub async fn run(config: RunConfig) -> Result<Report, Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(Error::Client)?;
    // Keep local fakes alive for the whole run.
    let mut _local: Option<Fakes> = None;
    let (source, downstream_url, graph_url) = match &config.fakes {
        FakesMode::Local(fc) => {
            let f = Fakes::start(fc.clone()).await?;
            let urls = (f.downstream_url(), f.graph_url());
            let src = Source::Local(f.state().clone());
            _local = Some(f);
            (Some(src), urls.0, urls.1)
        }
        FakesMode::External(base) => {
            let src = Source::External {
                base: base.trim_end_matches('/').to_owned(),
                client: client.clone(),
            };
            let stats = src.stats().await?;
            (Some(src), stats.downstream_url, stats.graph_url)
        }
        FakesMode::Elsewhere {
            downstream_url,
            graph_url,
        } => (None, downstream_url.clone(), graph_url.clone()),
    };
    let toml = webhook_config_toml(
        &downstream_url,
        &graph_url,
        &config.load.generator().app_secret,
        &ConfigExtras {
            rate_limit_per_minute: config.webhook_rate_limit,
            breaker_open_seconds: None,
        },
    );
    if config.print_config {
        println!("{toml}");
    }
    if let Some(path) = &config.config_out {
        std::fs::write(path, &toml).map_err(|source| Error::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    if let Some(wait) = config.wait_ready {
        for target in config.load.targets() {
            wait_ready(&client, target, wait).await?;
        }
    }

    let fault = match (&source, config.downstream_fail_window) {
        (Some(src), Some((from, until))) => {
            let src = src.clone();
            Some(tokio::spawn(async move {
                tokio::time::sleep(from).await;
                if let Err(e) = src.set_failing(true).await {
                    eprintln!("cannot make the downstream fail: {e}");
                }
                eprintln!("downstream failing (fault window starts)");
                tokio::time::sleep(until.saturating_sub(from)).await;
                if let Err(e) = src.set_failing(false).await {
                    eprintln!("cannot make the downstream recover: {e}");
                }
                eprintln!("downstream recovered (fault window ends)");
            }))
        }
        _ => None,
    };

    let outcome = run_load(&config.load).await?;

    let drain_start = Instant::now();
    let mut drained = false;
    let mut delivery = None;
    let mut fakes = None;
    if let Some(src) = &source {
        let wanted = outcome.accepted_ids.len() as u64;
        loop {
            let fault_over = fault.as_ref().is_none_or(|f| f.is_finished());
            // The summary is small; the per-id map can be megabytes, so fetch it only when the
            // distinct ids delivered could cover every accepted one.
            if fault_over && src.stats().await?.unique_messages >= wanted {
                let deliveries = src.deliveries().await?;
                if outcome
                    .accepted_ids
                    .iter()
                    .all(|id| deliveries.contains_key(id))
                {
                    drained = true;
                    tokio::time::sleep(config.drain_settle).await;
                    break;
                }
            }
            if drain_start.elapsed() >= config.drain_timeout {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let deliveries = src.deliveries().await?;
        delivery = Some(DeliveryReport::compute(
            &outcome.sent_ids,
            &outcome.accepted_ids,
            &deliveries,
        ));
        fakes = Some(src.stats().await?);
    }
    if let Some(f) = fault {
        if !f.is_finished() {
            f.abort();
            if let Some(src) = &source {
                // Never leave shared fakes failing after the run.
                src.set_failing(false).await?;
            }
        }
    }
    let lost = delivery.as_ref().map_or(0, |d| d.lost);
    let never = delivery
        .as_ref()
        .map_or(outcome.report.sends_never_accepted, |d| {
            d.messages_never_accepted
        });
    let ok = lost == 0 && (!config.strict || never == 0);
    let mut cfg_json = config.load.to_json();
    cfg_json["drain_timeout_secs"] = config.drain_timeout.as_secs_f64().into();
    cfg_json["downstream_url"] = downstream_url.into();
    cfg_json["graph_url"] = graph_url.into();
    if let Some((from, until)) = config.downstream_fail_window {
        cfg_json["downstream_fail_from_secs"] = from.as_secs_f64().into();
        cfg_json["downstream_fail_until_secs"] = until.as_secs_f64().into();
    }
    let last_delivery_after_load_secs = fakes.as_ref().and_then(|f| {
        delivery_lag_secs(
            outcome.report.send_ended_unix_ms,
            f.last_new_delivery_unix_ms,
        )
    });
    Ok(Report {
        config: cfg_json,
        send: outcome.report,
        delivery,
        last_delivery_after_load_secs,
        fakes,
        drain_secs: drain_start.elapsed().as_secs_f64(),
        drained,
        ok,
    })
}

async fn wait_ready(client: &reqwest::Client, target: &Url, wait: Duration) -> Result<(), Error> {
    let mut health = target.clone();
    health.set_path("/health");
    health.set_query(None);
    let start = Instant::now();
    loop {
        let ok = client
            .get(health.clone())
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(());
        }
        if start.elapsed() >= wait {
            return Err(Error::TargetNotReady {
                target: target.to_string(),
                waited_secs: wait.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
