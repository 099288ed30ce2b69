//! The sending side: an open-loop schedule at `rate` sends (or `messages_per_sec` messages) per
//! second, at most `concurrency` requests in flight, each send retried like Meta retries
//! (backoff, honouring `Retry-After`) until it gets a 200 or `give_up_after` passes.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use reqwest::Url;
use steadfast_retry::{Action, Jitter, Retry, RetryPolicy};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Error;
use crate::payload::{GeneratorConfig, Payload, PayloadGenerator};
use crate::report::{Latency, SendReport, StatusCounts};
use crate::signature::SIGNATURE_HEADER;

/// How many recent payloads a duplicate is drawn from (Meta re-sends recent deliveries).
const RECENT: usize = 256;

/// Settings of the sending side; build with [`LoadConfig::builder`].
#[derive(Debug, Clone)]
pub struct LoadConfig {
    targets: Vec<Url>,
    rate: f64,
    messages_per_sec: Option<f64>,
    max_messages: Option<u64>,
    duration: Duration,
    concurrency: usize,
    duplicate_share: f64,
    give_up_after: Duration,
    request_timeout: Duration,
    retry_initial: Duration,
    retry_max_delay: Duration,
    progress_every: Option<Duration>,
    generator: GeneratorConfig,
}

impl LoadConfig {
    /// A builder with the defaults: rate 100/s, 10 s, concurrency 32, 5 % duplicates, give up
    /// after 60 s, 10 s request timeout, retries from 200 ms doubling up to 5 s, no progress lines.
    pub fn builder() -> LoadConfigBuilder {
        LoadConfigBuilder {
            targets: Vec::new(),
            config: LoadConfig {
                targets: Vec::new(),
                rate: 100.0,
                messages_per_sec: None,
                max_messages: None,
                duration: Duration::from_secs(10),
                concurrency: 32,
                duplicate_share: 0.05,
                give_up_after: Duration::from_secs(60),
                request_timeout: Duration::from_secs(10),
                retry_initial: Duration::from_millis(200),
                retry_max_delay: Duration::from_secs(5),
                progress_every: None,
                generator: GeneratorConfig::default(),
            },
        }
    }

    /// The webhook URLs sends go to (round-robin; a duplicate goes to the next one).
    pub fn targets(&self) -> &[Url] {
        &self.targets
    }

    /// The payload generator's settings.
    pub fn generator(&self) -> &GeneratorConfig {
        &self.generator
    }

    /// The settings as JSON, for the report.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "targets": self.targets.iter().map(Url::as_str).collect::<Vec<_>>(),
            "rate": self.rate,
            "messages_per_sec": self.messages_per_sec,
            "max_messages": self.max_messages,
            "duration_secs": self.duration.as_secs_f64(),
            "concurrency": self.concurrency,
            "duplicate_share": self.duplicate_share,
            "give_up_after_secs": self.give_up_after.as_secs_f64(),
            "request_timeout_secs": self.request_timeout.as_secs_f64(),
            "retry_initial_ms": self.retry_initial.as_secs_f64() * 1e3,
            "retry_max_delay_ms": self.retry_max_delay.as_secs_f64() * 1e3,
            "mix": self.generator.mix.to_string(),
            "batch_size": self.generator.batch_size,
            "senders": self.generator.senders,
        })
    }
}

/// Builds a validated [`LoadConfig`].
#[derive(Debug, Clone)]
#[must_use]
pub struct LoadConfigBuilder {
    targets: Vec<String>,
    config: LoadConfig,
}

impl LoadConfigBuilder {
    /// Adds a target: a base URL (`http://127.0.0.1:8080`, `/webhook` is appended) or a full
    /// URL whose path is kept. Several targets share the load round-robin.
    pub fn target(mut self, url: impl Into<String>) -> Self {
        self.targets.push(url.into());
        self
    }

    /// Sends started per second; `0` means as fast as `concurrency` allows (closed loop).
    pub fn rate(mut self, per_sec: f64) -> Self {
        self.config.rate = per_sec;
        self
    }

    /// Paces by messages instead of sends: the next send is due once the new messages already
    /// sent are due at this rate (a batch of 5 counts 5; status updates and duplicates carry no
    /// new message and go out at once). Overrides [`rate`](Self::rate); `None` paces by sends.
    pub fn messages_per_sec(mut self, per_sec: Option<f64>) -> Self {
        self.config.messages_per_sec = per_sec;
        self
    }

    /// Stops starting sends once this many new messages were sent (or the duration ends).
    pub fn max_messages(mut self, n: Option<u64>) -> Self {
        self.config.max_messages = n;
        self
    }

    /// How long new sends are started.
    pub fn duration(mut self, d: Duration) -> Self {
        self.config.duration = d;
        self
    }

    /// Most HTTP requests in flight at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self
    }

    /// Share (0..=1) of sends that exactly re-send a recent payload, same bytes and signature.
    pub fn duplicate_share(mut self, share: f64) -> Self {
        self.config.duplicate_share = share;
        self
    }

    /// Stop retrying a send this long after its first attempt; it is then reported as never accepted.
    pub fn give_up_after(mut self, d: Duration) -> Self {
        self.config.give_up_after = d;
        self
    }

    /// Timeout of one HTTP attempt (a timeout is retried).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.config.request_timeout = d;
        self
    }

    /// First retry delay (doubling, with jitter) and the cap on any delay, `Retry-After` included.
    pub fn retry_backoff(mut self, initial: Duration, max_delay: Duration) -> Self {
        self.config.retry_initial = initial;
        self.config.retry_max_delay = max_delay;
        self
    }

    /// Print a progress line to stderr this often (default: never).
    pub fn progress_every(mut self, every: Option<Duration>) -> Self {
        self.config.progress_every = every;
        self
    }

    /// Payload settings (secret, mix, batch size, senders).
    pub fn generator(mut self, g: GeneratorConfig) -> Self {
        self.config.generator = g;
        self
    }

    /// Validates and returns the config; the error names the option at fault.
    pub fn build(self) -> Result<LoadConfig, Error> {
        let mut c = self.config;
        if self.targets.is_empty() {
            return Err(Error::config(
                "target",
                "at least one target URL is required",
            ));
        }
        for t in &self.targets {
            let mut url =
                Url::parse(t).map_err(|e| Error::config("target", format!("`{t}`: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Error::config(
                    "target",
                    format!("`{t}`: only http and https"),
                ));
            }
            if url.path() == "/" || url.path().is_empty() {
                url.set_path("/webhook");
            }
            c.targets.push(url);
        }
        if !c.rate.is_finite() || c.rate < 0.0 {
            return Err(Error::config(
                "rate",
                "must be a finite number >= 0 (0 = unlimited)",
            ));
        }
        if c.messages_per_sec
            .is_some_and(|r| !r.is_finite() || r <= 0.0)
        {
            return Err(Error::config(
                "messages-per-sec",
                "must be a finite number > 0",
            ));
        }
        if c.max_messages == Some(0) {
            return Err(Error::config("max-messages", "must be at least 1"));
        }
        if c.duration.is_zero() {
            return Err(Error::config("duration", "must be positive"));
        }
        if c.concurrency == 0 || c.concurrency > Semaphore::MAX_PERMITS {
            return Err(Error::config("concurrency", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&c.duplicate_share) {
            return Err(Error::config("duplicate-share", "must be within 0..=1"));
        }
        if c.give_up_after.is_zero() {
            return Err(Error::config("give-up-after", "must be positive"));
        }
        if c.request_timeout.is_zero() {
            return Err(Error::config("request-timeout", "must be positive"));
        }
        if c.retry_initial.is_zero() || c.retry_max_delay < c.retry_initial {
            return Err(Error::config(
                "retry-initial",
                "must be positive and not above --retry-max-delay",
            ));
        }
        c.generator.validate()?;
        Ok(c)
    }
}

/// What the sending side produced: the figures and the ids needed for the delivery check.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    /// Sending figures.
    pub report: SendReport,
    /// Every message id sent.
    pub sent_ids: HashSet<String>,
    /// Every message id that got a 200 at least once.
    pub accepted_ids: HashSet<String>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    ok: AtomicU64,
    r429: AtomicU64,
    r503: AtomicU64,
    other: AtomicU64,
    connection: AtomicU64,
    timeouts: AtomicU64,
    accepted: AtomicU64,
    never: AtomicU64,
    payloads: AtomicU64,
    duplicates: AtomicU64,
}

impl Counters {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

struct Shared {
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    policy: RetryPolicy,
    counters: Counters,
    other_codes: Mutex<BTreeMap<u16, u64>>,
    latencies_us: Mutex<Vec<u32>>,
    accepted_latencies_us: Mutex<Vec<u32>>,
    accepted_ids: Mutex<HashSet<String>>,
}

/// Why one attempt did not get a 200.
#[derive(Debug)]
enum AttemptError {
    Status { retry_after: Option<Duration> },
    Transport,
}

/// Runs the load described by `config` and returns its figures once every send was accepted or
/// given up.
pub async fn run_load(config: &LoadConfig) -> Result<LoadOutcome, Error> {
    let client = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .pool_max_idle_per_host(config.concurrency)
        .build()
        .map_err(Error::Client)?;
    let policy = RetryPolicy::builder()
        .exponential(config.retry_initial, 2.0)
        .max_delay(config.retry_max_delay)
        .jitter(Jitter::Equal)
        .max_attempts(u32::MAX)
        .max_elapsed(config.give_up_after)
        .build()
        .map_err(|e| Error::config("retry-initial", e.to_string()))?;
    let shared = Arc::new(Shared {
        client,
        permits: Arc::new(Semaphore::new(config.concurrency)),
        policy,
        counters: Counters::default(),
        other_codes: Mutex::new(BTreeMap::new()),
        latencies_us: Mutex::new(Vec::new()),
        accepted_latencies_us: Mutex::new(Vec::new()),
        accepted_ids: Mutex::new(HashSet::new()),
    });
    let mut generator = PayloadGenerator::new(config.generator.clone())?;
    let mut rng = SmallRng::seed_from_u64(config.generator.seed ^ 0xd00d);
    let mut sent_ids = HashSet::new();
    let mut recent: VecDeque<(Arc<Payload>, usize)> = VecDeque::with_capacity(RECENT);
    let mut tasks = JoinSet::new();
    let n_targets = config.targets.len();

    let start = Instant::now();
    let end = start + config.duration;
    let progress = config.progress_every.map(|every| {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(start + every, every);
            loop {
                tick.tick().await;
                print_progress(&shared, start);
            }
        })
    });
    // Open loop: the n-th send (or the send after the n-th new message) is due at
    // start + n * period, whatever happened before, so a slow target meets the backlog a real
    // sender would build.
    let (period, by_messages) = match config.messages_per_sec {
        Some(r) => (Some(Duration::from_secs_f64(1.0 / r)), true),
        None => (
            (config.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / config.rate)),
            false,
        ),
    };
    let mut issued: u64 = 0;
    let mut new_messages: u64 = 0;
    loop {
        if config.max_messages.is_some_and(|m| new_messages >= m) {
            break;
        }
        if let Some(period) = period {
            let n = if by_messages { new_messages } else { issued };
            let due = start + period.mul_f64(n as f64);
            if due >= end {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        let permit = Arc::clone(&shared.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if Instant::now() >= end {
            break;
        }
        issued += 1;
        let (payload, target) = if !recent.is_empty() && rng.random_bool(config.duplicate_share) {
            let (p, t) = recent[rng.random_range(0..recent.len())].clone();
            shared.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            // A retry from Meta may reach another instance: send it to the next target.
            (p, (t + 1) % n_targets)
        } else {
            let p = Arc::new(generator.next_payload());
            new_messages += p.message_ids.len() as u64;
            sent_ids.extend(p.message_ids.iter().cloned());
            let n = shared.counters.payloads.fetch_add(1, Ordering::Relaxed);
            let t = (n % n_targets as u64) as usize;
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back((Arc::clone(&p), t));
            (p, t)
        };
        tasks.spawn(deliver(
            Arc::clone(&shared),
            config.targets[target].clone(),
            payload,
            permit,
        ));
        while tasks.try_join_next().is_some() {}
    }
    let send_secs = start.elapsed().as_secs_f64();
    let send_ended_unix_ms = unix_ms(SystemTime::now());
    while tasks.join_next().await.is_some() {}
    let elapsed_secs = start.elapsed().as_secs_f64();
    if let Some(p) = progress {
        p.abort();
    }

    let c = &shared.counters;
    let accepted_ids = std::mem::take(&mut *shared.accepted_ids.lock());
    let mut latencies = std::mem::take(&mut *shared.latencies_us.lock());
    let mut accepted_latencies = std::mem::take(&mut *shared.accepted_latencies_us.lock());
    let sends_accepted = Counters::get(&c.accepted);
    let per_sec = |n: f64| {
        if elapsed_secs > 0.0 {
            n / elapsed_secs
        } else {
            0.0
        }
    };
    let report = SendReport {
        send_secs,
        send_ended_unix_ms,
        elapsed_secs,
        requests: Counters::get(&c.requests),
        retries: Counters::get(&c.retries),
        payloads: Counters::get(&c.payloads),
        duplicate_sends: Counters::get(&c.duplicates),
        sends_accepted,
        sends_never_accepted: Counters::get(&c.never),
        accepted_per_sec: per_sec(sends_accepted as f64),
        messages_accepted_per_sec: per_sec(accepted_ids.len() as f64),
        status: StatusCounts {
            ok_200: Counters::get(&c.ok),
            too_many_requests_429: Counters::get(&c.r429),
            unavailable_503: Counters::get(&c.r503),
            other: Counters::get(&c.other),
            other_by_code: shared.other_codes.lock().clone(),
            connection_errors: Counters::get(&c.connection),
            timeouts: Counters::get(&c.timeouts),
        },
        latency: Latency::from_micros(&mut latencies),
        latency_accepted: Latency::from_micros(&mut accepted_latencies),
    };
    Ok(LoadOutcome {
        report,
        sent_ids,
        accepted_ids,
    })
}

/// Milliseconds since the Unix epoch (0 for a clock set before it): the wall clock the fakes
/// stamp deliveries with, so a run and external fakes on the same machine can be compared.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn print_progress(shared: &Shared, start: Instant) {
    let c = &shared.counters;
    eprintln!(
        "[{:>6.1}s] sends {} (+{} dup) accepted {} | 200 {} 429 {} 503 {} other {} conn-err {} timeout {} | retries {}",
        start.elapsed().as_secs_f64(),
        Counters::get(&c.payloads),
        Counters::get(&c.duplicates),
        Counters::get(&c.accepted),
        Counters::get(&c.ok),
        Counters::get(&c.r429),
        Counters::get(&c.r503),
        Counters::get(&c.other),
        Counters::get(&c.connection),
        Counters::get(&c.timeouts),
        Counters::get(&c.retries),
    );
}

/// One send: attempts until a 200 or the policy gives up. The first attempt uses the permit the
/// scheduler acquired; later ones take a fresh permit, so waiting retries hold no slot.
async fn deliver(
    shared: Arc<Shared>,
    url: Url,
    payload: Arc<Payload>,
    permit: OwnedSemaphorePermit,
) {
    let mut first = Some(permit);
    let s: &Shared = &shared;
    let result = Retry::new(&s.policy)
        .classify(|e: &AttemptError| match e {
            AttemptError::Status {
                retry_after: Some(d),
            } => Action::RetryAfter(*d),
            _ => Action::Retry,
        })
        .on_retry(|_| {
            s.counters.retries.fetch_add(1, Ordering::Relaxed);
        })
        .run(|| attempt(s, &url, &payload, first.take()))
        .await;
    match result {
        Ok(()) => {
            s.counters.accepted.fetch_add(1, Ordering::Relaxed);
            s.accepted_ids
                .lock()
                .extend(payload.message_ids.iter().cloned());
        }
        Err(_) => {
            s.counters.never.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn attempt(
    s: &Shared,
    url: &Url,
    payload: &Payload,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<(), AttemptError> {
    let _permit = match permit {
        Some(p) => p,
        None => Arc::clone(&s.permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed"),
    };
    s.counters.requests.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let sent = s
        .client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, &payload.signature)
        .body(payload.body.clone())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            let counter = if e.is_timeout() {
                &s.counters.timeouts
            } else {
                &s.counters.connection
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Err(AttemptError::Transport);
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // The answer counts once fully read (a reset mid-body is a transport error).
    if let Err(e) = response.bytes().await {
        let counter = if e.is_timeout() {
            &s.counters.timeouts
        } else {
            &s.counters.connection
        };
        counter.fetch_add(1, Ordering::Relaxed);
        return Err(AttemptError::Transport);
    }
    let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
    s.latencies_us.lock().push(micros);
    let c = &s.counters;
    match status {
        200 => {
            c.ok.fetch_add(1, Ordering::Relaxed);
            s.accepted_latencies_us.lock().push(micros);
            return Ok(());
        }
        429 => c.r429.fetch_add(1, Ordering::Relaxed),
        503 => c.r503.fetch_add(1, Ordering::Relaxed),
        code => {
            *s.other_codes.lock().entry(code).or_insert(0) += 1;
            c.other.fetch_add(1, Ordering::Relaxed)
        }
    };
    Err(AttemptError::Status { retry_after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        let ok = LoadConfig::builder()
            .target("http://127.0.0.1:8080")
            .build()
            .unwrap();
        assert_eq!(ok.targets()[0].as_str(), "http://127.0.0.1:8080/webhook");
        let kept = LoadConfig::builder()
            .target("http://h:1/hooks/wa")
            .build()
            .unwrap();
        assert_eq!(kept.targets()[0].path(), "/hooks/wa");
        let err = |b: LoadConfigBuilder| match b.build() {
            Err(Error::Config { option, .. }) => option,
            other => panic!("expected a config error, got {other:?}"),
        };
        let base = || LoadConfig::builder().target("http://127.0.0.1:1");
        assert_eq!(err(LoadConfig::builder()), "target");
        assert_eq!(err(LoadConfig::builder().target("not a url")), "target");
        assert_eq!(err(LoadConfig::builder().target("ftp://x/")), "target");
        assert_eq!(err(base().rate(-1.0)), "rate");
        assert_eq!(err(base().rate(f64::NAN)), "rate");
        assert_eq!(err(base().messages_per_sec(Some(0.0))), "messages-per-sec");
        assert_eq!(
            err(base().messages_per_sec(Some(f64::INFINITY))),
            "messages-per-sec"
        );
        assert_eq!(err(base().max_messages(Some(0))), "max-messages");
        assert!(
            base()
                .messages_per_sec(Some(1000.0))
                .max_messages(Some(20_000))
                .build()
                .is_ok()
        );
        assert_eq!(err(base().duration(Duration::ZERO)), "duration");
        assert_eq!(err(base().concurrency(0)), "concurrency");
        assert_eq!(err(base().duplicate_share(1.5)), "duplicate-share");
        assert_eq!(err(base().give_up_after(Duration::ZERO)), "give-up-after");
        assert_eq!(
            err(base().retry_backoff(Duration::from_secs(2), Duration::from_secs(1))),
            "retry-initial"
        );
        assert_eq!(
            err(base().generator(GeneratorConfig {
                senders: 0,
                ..GeneratorConfig::default()
            })),
            "senders"
        );
    }
}
