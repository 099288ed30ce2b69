//! `payments-bench`: a small load driver for `scripts/bench-payments`. It drives
//! `POST <path>` transfers flat out from `--concurrency` workers for `--secs` seconds and
//! prints one JSON line: requests, statuses, transfers/s, latency percentiles.
//!
//! Worker `i` moves 1 RWF back and forth between `bench_<i>_a` and `bench_<i>_b` (the script
//! creates and funds them), so no account runs dry and workers do not contend for rows: the
//! figure is the service's per-transfer cost, not lock queueing. With `--keys` every request
//! carries a fresh `Idempotency-Key`.

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// The service, e.g. `http://127.0.0.1:18182`.
    #[arg(long)]
    target: String,
    /// `/v1/transfers` (with the idempotency layer) or `/bench/transfers` (without).
    #[arg(long, default_value = "/v1/transfers")]
    path: String,
    /// The API token.
    #[arg(long, env = "PAYMENTS_API_TOKEN")]
    token: String,
    /// Workers (requests in flight).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Send a fresh Idempotency-Key with every request.
    #[arg(long)]
    keys: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .expect("an HTTP client");
    let url = format!("{}{}", args.target.trim_end_matches('/'), args.path);
    let started = Instant::now();
    let end = started + Duration::from_secs(args.secs);
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (client, url, token, keys) =
            (client.clone(), url.clone(), args.token.clone(), args.keys);
        workers.push(tokio::spawn(async move {
            let (a, b) = (format!("bench_{w}_a"), format!("bench_{w}_b"));
            let mut latencies = Vec::new();
            let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
            let mut n: u64 = 0;
            while Instant::now() < end {
                let (from, to) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
                let mut req = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"from": from, "to": to, "amount": 1, "currency": "RWF"}));
                if keys {
                    req = req.header(
                        "idempotency-key",
                        format!("bench-{w}-{n}-{}", uuid::Uuid::new_v4().simple()),
                    );
                }
                let t = Instant::now();
                let status = match req.send().await {
                    Ok(res) => {
                        let s = res.status().as_u16();
                        let _ = res.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                latencies.push(t.elapsed());
                *statuses.entry(status).or_default() += 1;
                if status == 201 {
                    n += 1;
                }
            }
            (latencies, statuses)
        }));
    }
    let mut latencies = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    for w in workers {
        if let Ok((l, s)) = w.await {
            latencies.extend(l);
            for (k, v) in s {
                *statuses.entry(k).or_default() += v;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let ok = statuses.get(&201).copied().unwrap_or(0);
    println!(
        "{}",
        json!({
            "path": args.path,
            "keys": args.keys,
            "concurrency": args.concurrency,
            "secs": elapsed,
            "requests": latencies.len(),
            "statuses": statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
            "transfers_per_sec": ok as f64 / elapsed,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
        })
    );
}
