//! The figures of a run and the arithmetic behind them (pure functions, unit-tested).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::Serialize;

/// How many ids the report lists by name (lost, never accepted); the counts are always complete.
pub const MAX_LISTED_IDS: usize = 100;

/// Answers to every HTTP attempt, by class.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StatusCounts {
    /// 200 answers.
    pub ok_200: u64,
    /// 429 answers (rate limited).
    pub too_many_requests_429: u64,
    /// 503 answers (store down).
    pub unavailable_503: u64,
    /// Any other status.
    pub other: u64,
    /// Other statuses by code.
    pub other_by_code: BTreeMap<u16, u64>,
    /// Connection refused/reset and other transport errors (no status).
    pub connection_errors: u64,
    /// Attempts that hit `--request-timeout`.
    pub timeouts: u64,
}

/// Latency of HTTP attempts (send to full answer), in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Attempts measured (those that got an answer).
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

impl Latency {
    /// Percentiles (nearest rank) of latencies given in microseconds; sorts in place.
    pub fn from_micros(samples: &mut [u32]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let ms = |us: u32| f64::from(us) / 1000.0;
        let sum: u64 = samples.iter().map(|&s| u64::from(s)).sum();
        Latency {
            count: samples.len() as u64,
            p50_ms: ms(percentile(samples, 0.50)),
            p95_ms: ms(percentile(samples, 0.95)),
            p99_ms: ms(percentile(samples, 0.99)),
            max_ms: ms(samples[samples.len() - 1]),
            mean_ms: sum as f64 / samples.len() as f64 / 1000.0,
        }
    }
}

/// Nearest-rank percentile of a sorted, non-empty slice (`q` in 0..=1).
pub fn percentile(sorted: &[u32], q: f64) -> u32 {
    let n = sorted.len();
    let rank = (q * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// The sending side of a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SendReport {
    /// Seconds spent issuing new sends (the `--duration`, or less if interrupted or once
    /// `--max-messages` were sent).
    pub send_secs: f64,
    /// Wall clock when the last new send was started, in milliseconds since the Unix epoch:
    /// "the end of the load", compared with the fakes' delivery times.
    pub send_ended_unix_ms: u64,
    /// Seconds from the first send until the last send was accepted or given up (retries included).
    pub elapsed_secs: f64,
    /// HTTP attempts made, retries included.
    pub requests: u64,
    /// Attempts beyond the first of each send.
    pub retries: u64,
    /// Distinct payloads generated.
    pub payloads: u64,
    /// Exact re-sends of an earlier payload (Meta-style duplicates).
    pub duplicate_sends: u64,
    /// Sends (originals and duplicates) that got a 200.
    pub sends_accepted: u64,
    /// Sends that never got a 200 before `--give-up-after`.
    pub sends_never_accepted: u64,
    /// `sends_accepted / elapsed_secs`.
    pub accepted_per_sec: f64,
    /// Messages (distinct wamids) accepted per second of `elapsed_secs`.
    pub messages_accepted_per_sec: f64,
    /// Answers by class.
    pub status: StatusCounts,
    /// Latency of every answered attempt (200, 429, 503, ...).
    pub latency: Latency,
    /// Latency of the attempts answered 200 only.
    pub latency_accepted: Latency,
}

/// Per-message-id outcome: what was accepted against what reached the downstream.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Distinct message ids sent.
    pub messages_sent: u64,
    /// Ids that got a 200 at least once.
    pub messages_accepted: u64,
    /// Ids never accepted (every send of them gave up): Meta would still be retrying them.
    pub messages_never_accepted: u64,
    /// Accepted ids delivered downstream at least once.
    pub delivered: u64,
    /// Accepted ids never delivered: the figure that must be 0.
    pub lost: u64,
    /// Ids delivered although no send of them got a 200 (stored, then the answer was lost): not an error.
    pub delivered_not_accepted: u64,
    /// Deliveries beyond the first, summed over this run's ids.
    pub duplicate_deliveries: u64,
    /// This run's ids delivered more than once.
    pub messages_with_duplicates: u64,
    /// Deliveries of ids this run never sent (other runs, or a bug).
    pub unknown_ids_delivered: u64,
    /// Up to [`MAX_LISTED_IDS`] lost ids, sorted.
    pub lost_ids: Vec<String>,
    /// Up to [`MAX_LISTED_IDS`] never-accepted ids, sorted.
    pub never_accepted_ids: Vec<String>,
}

impl DeliveryReport {
    /// Compares the ids sent and accepted with the deliveries per id seen downstream.
    pub fn compute(
        sent: &HashSet<String>,
        accepted: &HashSet<String>,
        deliveries: &HashMap<String, u32>,
    ) -> DeliveryReport {
        let mut lost: Vec<String> = accepted
            .iter()
            .filter(|id| deliveries.get(*id).is_none_or(|&c| c == 0))
            .cloned()
            .collect();
        let mut never: Vec<String> = sent.difference(accepted).cloned().collect();
        let delivered_not_accepted = never
            .iter()
            .filter(|id| deliveries.get(*id).is_some_and(|&c| c > 0))
            .count() as u64;
        let mut duplicate_deliveries = 0u64;
        let mut with_dups = 0u64;
        let mut unknown = 0u64;
        for (id, &count) in deliveries {
            if sent.contains(id) || accepted.contains(id) {
                if count > 1 {
                    duplicate_deliveries += u64::from(count - 1);
                    with_dups += 1;
                }
            } else if count > 0 {
                unknown += 1;
            }
        }
        let lost_count = lost.len() as u64;
        let never_count = never.len() as u64;
        lost.sort_unstable();
        lost.truncate(MAX_LISTED_IDS);
        never.sort_unstable();
        never.truncate(MAX_LISTED_IDS);
        DeliveryReport {
            messages_sent: sent.len() as u64,
            messages_accepted: accepted.len() as u64,
            messages_never_accepted: never_count,
            delivered: accepted.len() as u64 - lost_count,
            lost: lost_count,
            delivered_not_accepted,
            duplicate_deliveries,
            messages_with_duplicates: with_dups,
            unknown_ids_delivered: unknown,
            lost_ids: lost,
            never_accepted_ids: never,
        }
    }
}

/// Seconds from `load_ended_unix_ms` to `last_new_delivery_unix_ms` (negative when the last
/// message was delivered before the load ended); `None` when nothing was delivered (0).
pub fn delivery_lag_secs(load_ended_unix_ms: u64, last_new_delivery_unix_ms: u64) -> Option<f64> {
    (last_new_delivery_unix_ms != 0)
        .then(|| (last_new_delivery_unix_ms as f64 - load_ended_unix_ms as f64) / 1000.0)
}

/// Everything `--report-json` writes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// The settings of the run.
    pub config: serde_json::Value,
    /// Sending figures.
    pub send: SendReport,
    /// Delivery figures; `None` when deliveries could not be checked (`--downstream-url`).
    pub delivery: Option<DeliveryReport>,
    /// The fakes' own summary at the end (graph replies, failed calls, deliveries by path).
    pub fakes: Option<crate::FakeStats>,
    /// Seconds spent waiting for deliveries after sending.
    pub drain_secs: f64,
    /// Seconds from the end of the load (the last new send started) until the fakes first saw
    /// the last message id they received: how long the backlog took to clear. `None` without
    /// fakes or when nothing was delivered. Only meaningful with every accepted id delivered
    /// (`drained`) and fakes that served no later run.
    pub last_delivery_after_load_secs: Option<f64>,
    /// Whether every accepted id was delivered before `--drain-timeout`.
    pub drained: bool,
    /// `lost == 0` (and, with `--strict`, nothing never accepted).
    pub ok: bool,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.send;
        let st = &s.status;
        writeln!(
            f,
            "== send ({:.1} s sending, {:.1} s with retries)",
            s.send_secs, s.elapsed_secs
        )?;
        writeln!(
            f,
            "payloads {} + duplicates {} | requests {} (retries {}) | accepted {} | never accepted {}",
            s.payloads,
            s.duplicate_sends,
            s.requests,
            s.retries,
            s.sends_accepted,
            s.sends_never_accepted
        )?;
        writeln!(
            f,
            "accepted/s {:.1} | messages accepted/s {:.1}",
            s.accepted_per_sec, s.messages_accepted_per_sec
        )?;
        writeln!(
            f,
            "latency ms p50 {:.2} | p95 {:.2} | p99 {:.2} | max {:.2} (n={})",
            s.latency.p50_ms, s.latency.p95_ms, s.latency.p99_ms, s.latency.max_ms, s.latency.count
        )?;
        let la = &s.latency_accepted;
        writeln!(
            f,
            "latency of 200s ms p50 {:.2} | p95 {:.2} | p99 {:.2} | max {:.2} (n={})",
            la.p50_ms, la.p95_ms, la.p99_ms, la.max_ms, la.count
        )?;
        writeln!(
            f,
            "status 200 {} | 429 {} | 503 {} | other {} {:?} | connection errors {} | timeouts {}",
            st.ok_200,
            st.too_many_requests_429,
            st.unavailable_503,
            st.other,
            st.other_by_code,
            st.connection_errors,
            st.timeouts
        )?;
        match &self.delivery {
            Some(d) => {
                writeln!(
                    f,
                    "== delivery (waited {:.1} s, drained: {})",
                    self.drain_secs, self.drained
                )?;
                writeln!(
                    f,
                    "messages sent {} | accepted {} | never accepted {} | delivered {} | LOST {} | duplicate deliveries {} ({} ids) | delivered not accepted {} | unknown ids {}",
                    d.messages_sent,
                    d.messages_accepted,
                    d.messages_never_accepted,
                    d.delivered,
                    d.lost,
                    d.duplicate_deliveries,
                    d.messages_with_duplicates,
                    d.delivered_not_accepted,
                    d.unknown_ids_delivered
                )?;
                if let Some(lag) = self.last_delivery_after_load_secs {
                    writeln!(f, "last message delivered {lag:.2} s after the load ended")?;
                }
                if !d.lost_ids.is_empty() {
                    let shown = &d.lost_ids[..d.lost_ids.len().min(10)];
                    writeln!(f, "lost ids (first {}): {}", shown.len(), shown.join(" "))?;
                }
            }
            None => writeln!(f, "== delivery not checked (no fakes)")?,
        }
        if let Some(fk) = &self.fakes {
            writeln!(
                f,
                "fakes: graph replies {} | downstream failed calls {} | bad calls {} | idempotency-key mismatches {}",
                fk.graph_replies,
                fk.failed_requests,
                fk.bad_requests,
                fk.idempotency_key_mismatches
            )?;
        }
        write!(f, "result: {}", if self.ok { "OK" } else { "FAILED" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn lost_duplicates_and_strays() {
        let sent = set(&["a", "b", "c", "d", "e"]);
        let accepted = set(&["a", "b", "c"]);
        let deliveries: HashMap<String, u32> = [("a", 1), ("b", 3), ("d", 2), ("zz", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let r = DeliveryReport::compute(&sent, &accepted, &deliveries);
        assert_eq!(r.messages_sent, 5);
        assert_eq!(r.messages_accepted, 3);
        assert_eq!(r.messages_never_accepted, 2);
        assert_eq!(r.delivered, 2);
        assert_eq!(r.lost, 1);
        assert_eq!(r.lost_ids, vec!["c".to_owned()]);
        assert_eq!(r.never_accepted_ids, vec!["d".to_owned(), "e".to_owned()]);
        assert_eq!(r.delivered_not_accepted, 1);
        // b twice extra, d once extra.
        assert_eq!(r.duplicate_deliveries, 3);
        assert_eq!(r.messages_with_duplicates, 2);
        assert_eq!(r.unknown_ids_delivered, 1);
    }

    #[test]
    fn nothing_delivered_means_everything_accepted_is_lost() {
        let ids: Vec<String> = (0..250).map(|i| format!("wamid.{i}")).collect();
        let sent: HashSet<String> = ids.iter().cloned().collect();
        let r = DeliveryReport::compute(&sent, &sent, &HashMap::new());
        assert_eq!(r.lost, 250);
        assert_eq!(r.lost_ids.len(), MAX_LISTED_IDS);
        assert_eq!(r.delivered, 0);
    }

    #[test]
    fn delivery_lag_is_signed_and_absent_without_deliveries() {
        assert_eq!(delivery_lag_secs(1_000_000, 1_002_500), Some(2.5));
        assert_eq!(delivery_lag_secs(1_000_000, 999_750), Some(-0.25));
        assert_eq!(delivery_lag_secs(1_000_000, 0), None);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let l = Latency::from_micros(&mut v);
        assert_eq!(l.count, 100);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p95_ms, 95.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert_eq!(l.mean_ms, 50.5);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[1, 2], 0.0), 1);
        assert_eq!(Latency::from_micros(&mut []), Latency::default());
    }

    proptest! {
        #[test]
        fn accounting_invariants(
            sent in proptest::collection::hash_set(0u16..200, 0..100),
            acc_mask in proptest::collection::vec(any::<bool>(), 200),
            deliv in proptest::collection::hash_map(0u16..300, 0u32..4, 0..150),
        ) {
            let sent: HashSet<String> = sent.into_iter().map(|i| i.to_string()).collect();
            let accepted: HashSet<String> = sent.iter().filter(|s| acc_mask[s.parse::<usize>().unwrap()]).cloned().collect();
            let deliveries: HashMap<String, u32> = deliv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let r = DeliveryReport::compute(&sent, &accepted, &deliveries);
            prop_assert_eq!(r.delivered + r.lost, r.messages_accepted);
            prop_assert_eq!(r.messages_accepted + r.messages_never_accepted, r.messages_sent);
            prop_assert!(r.delivered_not_accepted <= r.messages_never_accepted);
            prop_assert!(r.messages_with_duplicates <= r.duplicate_deliveries);
            let expected_lost = accepted.iter().filter(|id| deliveries.get(*id).copied().unwrap_or(0) == 0).count() as u64;
            prop_assert_eq!(r.lost, expected_lost);
        }

        #[test]
        fn percentile_is_an_element_and_monotonic(mut v in proptest::collection::vec(any::<u32>(), 1..200), q in 0.0f64..=1.0) {
            v.sort_unstable();
            let p = percentile(&v, q);
            prop_assert!(v.contains(&p));
            prop_assert!(percentile(&v, q / 2.0) <= p);
        }
    }
}
