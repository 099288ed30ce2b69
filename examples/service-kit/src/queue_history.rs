//! A queue's recent statistics, for the console's overview: the last two readings (for the
//! throughput) and one sample a minute over the last hour (for the chart). A service records
//! a reading from its background checks ([`QueueHistory::record`]) and serves the history
//! from memory (`GET /admin/stats`, [`crate::admin`]), never querying the store per request.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How often a service reads its queue's statistics for the history, at most.
pub const READ_EVERY: Duration = Duration::from_secs(10);

/// One reading of the queue's statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepthSample {
    /// When it was read.
    pub at: DateTime<Utc>,
    /// Messages waiting for their first attempt (or replayed).
    pub pending: u64,
    /// Messages a worker holds.
    pub running: u64,
    /// Messages waiting for a retry.
    pub retrying: u64,
    /// Dead letters.
    pub dead: u64,
    /// Processed messages still kept (for de-duplication).
    pub done: u64,
    /// How long the oldest due message has waited past its due time, in seconds.
    pub oldest_due_age_seconds: f64,
}

impl DepthSample {
    /// The sample of `stats`, read at `at`.
    pub fn from_stats(stats: &steadfast_dlq::QueueStats, at: DateTime<Utc>) -> Self {
        use steadfast_dlq::State as S;
        Self {
            at,
            pending: stats.count(S::Pending),
            running: stats.count(S::Running),
            retrying: stats.count(S::Retrying),
            dead: stats.count(S::Dead),
            done: stats.count(S::Done),
            oldest_due_age_seconds: stats.oldest_due_age.as_secs_f64(),
        }
    }
}

/// The queue's recent statistics: the last two readings and one sample a minute over the
/// last hour (at most [`QueueHistory::CAPACITY`]), for the console's overview chart.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueHistory {
    samples: VecDeque<DepthSample>,
    latest: Option<DepthSample>,
    previous: Option<DepthSample>,
}

impl QueueHistory {
    /// Samples kept: an hour of one a minute.
    pub const CAPACITY: usize = 60;
    /// The span the samples cover.
    pub const SPAN: Duration = Duration::from_secs(3600);
    /// How far apart the kept samples are, at least. Readings come every [`READ_EVERY`] (or more often) and
    /// a little late, so a reading within half a period of a minute counts as the minute's.
    pub const SAMPLE_EVERY: Duration = Duration::from_secs(60 - READ_EVERY.as_secs() / 2);

    /// Records a reading: always as the latest, and as a sample when the last sample is at
    /// least [`SAMPLE_EVERY`](Self::SAMPLE_EVERY) older. Samples older than an hour before it
    /// are dropped (a process whose store was down for a while has a gap, not stale points).
    pub fn record(&mut self, reading: DepthSample) {
        let every = chrono::Duration::from_std(Self::SAMPLE_EVERY).unwrap_or_default();
        let due = self
            .samples
            .back()
            .is_none_or(|last| reading.at - last.at >= every);
        if due {
            self.samples.push_back(reading.clone());
        }
        let span = chrono::Duration::from_std(Self::SPAN).unwrap_or_default();
        while self.samples.len() > Self::CAPACITY
            || self
                .samples
                .front()
                .is_some_and(|s| reading.at - s.at > span)
        {
            self.samples.pop_front();
        }
        self.previous = self.latest.replace(reading);
    }

    /// The kept samples, oldest first.
    pub fn samples(&self) -> impl ExactSizeIterator<Item = &DepthSample> {
        self.samples.iter()
    }

    /// The last reading.
    pub fn latest(&self) -> Option<&DepthSample> {
        self.latest.as_ref()
    }

    /// Messages processed per minute between the last two readings (`None` before the second
    /// reading). Counted from the `done` rows, so it is the whole queue's throughput, every
    /// instance's workers included; a retention prune between the readings reads as zero.
    pub fn throughput_per_minute(&self) -> Option<f64> {
        let (prev, last) = (self.previous.as_ref()?, self.latest.as_ref()?);
        let seconds = (last.at - prev.at).num_milliseconds() as f64 / 1000.0;
        if seconds <= 0.0 {
            return None;
        }
        Some(last.done.saturating_sub(prev.done) as f64 * 60.0 / seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at_s: i64, done: u64) -> DepthSample {
        DepthSample {
            at: DateTime::from_timestamp(1_800_000_000 + at_s, 0).unwrap(),
            pending: 1,
            running: 0,
            retrying: 2,
            dead: 3,
            done,
            oldest_due_age_seconds: 0.0,
        }
    }

    #[test]
    fn keeps_one_sample_a_minute_for_an_hour() {
        let mut h = QueueHistory::default();
        // A reading every 10 s (and a little late) for two hours.
        for i in 0..720 {
            h.record(reading(i * 10 + i % 3, 0));
        }
        let samples: Vec<_> = h.samples().collect();
        assert!(samples.len() <= QueueHistory::CAPACITY);
        assert!(samples.len() >= 55, "{} samples", samples.len());
        let last = h.latest().unwrap().at;
        assert!(
            samples
                .iter()
                .all(|s| last - s.at <= chrono::Duration::hours(1))
        );
        for pair in samples.windows(2) {
            assert!(pair[1].at - pair[0].at >= chrono::Duration::seconds(55));
        }
    }

    #[test]
    fn a_gap_drops_the_samples_older_than_an_hour() {
        let mut h = QueueHistory::default();
        h.record(reading(0, 0));
        h.record(reading(60, 0));
        h.record(reading(60 + 7200, 0));
        assert_eq!(h.samples().count(), 1);
    }

    #[test]
    fn throughput_is_done_rows_per_minute_between_readings() {
        let mut h = QueueHistory::default();
        h.record(reading(0, 100));
        assert_eq!(h.throughput_per_minute(), None);
        h.record(reading(10, 130));
        assert_eq!(h.throughput_per_minute(), Some(180.0));
        // Retention pruned done rows: no negative throughput.
        h.record(reading(20, 10));
        assert_eq!(h.throughput_per_minute(), Some(0.0));
    }
}
