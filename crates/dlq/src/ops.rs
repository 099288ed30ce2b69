//! What operator actions select and return: filters, paging, retention, stats, alerts.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Message, MessageId, State};

/// Selects messages for listing, bulk replay and purge. Starts from one state (dead letters by
/// default) and narrows by queue, the kind of the last error, and a time range on the last
/// change (for a dead letter: when it died).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Filter {
    /// The state to select; `None` means dead letters.
    pub state: Option<State>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only messages whose last error has this kind.
    pub error_kind: Option<String>,
    /// Only messages last changed at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only messages last changed before this time.
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    /// Every dead letter.
    pub fn dead() -> Self {
        Filter::default()
    }

    /// Every message in `state`.
    pub fn in_state(state: State) -> Self {
        Filter {
            state: Some(state),
            ..Filter::default()
        }
    }

    /// Narrow to one queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Narrow to a last-error kind.
    pub fn error_kind(mut self, kind: impl Into<String>) -> Self {
        self.error_kind = Some(kind.into());
        self
    }

    /// Narrow to messages last changed in `[since, until)`.
    pub fn between(mut self, since: DateTime<Utc>, until: DateTime<Utc>) -> Self {
        self.since = Some(since);
        self.until = Some(until);
        self
    }

    /// The state selected.
    pub fn target_state(&self) -> State {
        self.state.unwrap_or(State::Dead)
    }

    /// Whether `m` is selected (the memory store uses this; Postgres says the same in SQL).
    pub fn matches(&self, m: &Message) -> bool {
        m.state == self.target_state()
            && self.queue.as_ref().is_none_or(|q| *q == m.queue)
            && self
                .error_kind
                .as_ref()
                .is_none_or(|k| m.last_error().is_some_and(|e| e.kind == *k))
            && self.since.is_none_or(|t| m.updated_at >= t)
            && self.until.is_none_or(|t| m.updated_at < t)
    }
}

/// Keyset paging over message ids (time-ordered): ask for `limit` messages after `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// At most this many (clamped to `1..=MAX_PAGE`).
    pub limit: u32,
    /// Start after this id (the last id of the previous page).
    pub after: Option<MessageId>,
}

/// The largest page a list returns.
pub const MAX_PAGE: u32 = 1000;

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: 50,
            after: None,
        }
    }
}

impl Page {
    /// The first page of `limit` messages.
    pub fn first(limit: u32) -> Self {
        Page { limit, after: None }
    }

    /// The page after `id`.
    pub fn after(mut self, id: MessageId) -> Self {
        self.after = Some(id);
        self
    }

    /// The limit, clamped.
    pub fn clamped_limit(&self) -> u32 {
        self.limit.clamp(1, MAX_PAGE)
    }
}

/// How long settled messages are kept. Defaults: `done` for 7 days (the seed system's
/// retention), `dead` for 30 days (long enough for an operator to look).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Prune `done` messages last changed longer ago than this.
    pub done: Duration,
    /// Prune `dead` messages last changed longer ago than this; `None` keeps them.
    pub dead: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            done: Duration::from_secs(7 * 24 * 3600),
            dead: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Pruned {
    /// `done` messages removed.
    pub done: u64,
    /// `dead` messages removed.
    pub dead: u64,
}

/// One queue's health: counts by state and the age of the oldest due message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Messages per state (every state present, zero included).
    pub counts: BTreeMap<State, u64>,
    /// How long the oldest due `pending`/`retrying` message has waited past its due time
    /// (zero when nothing is due). A growing value means workers do not keep up.
    pub oldest_due_age: Duration,
}

impl QueueStats {
    /// Empty stats for `queue`.
    pub fn empty(queue: impl Into<String>) -> Self {
        QueueStats {
            queue: queue.into(),
            counts: State::ALL.into_iter().map(|s| (s, 0)).collect(),
            oldest_due_age: Duration::ZERO,
        }
    }

    /// Messages in `state`.
    pub fn count(&self, state: State) -> u64 {
        self.counts.get(&state).copied().unwrap_or(0)
    }

    /// Dead letters.
    pub fn dead(&self) -> u64 {
        self.count(State::Dead)
    }

    /// Messages waiting or in flight (`pending` + `retrying` + `running`).
    pub fn depth(&self) -> u64 {
        self.count(State::Pending) + self.count(State::Retrying) + self.count(State::Running)
    }
}

/// How bad the dead-letter count is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    /// At or below the warning threshold.
    Ok,
    /// Above the warning threshold, at or below the critical one.
    Warn,
    /// Above the critical threshold.
    Critical,
}

impl AlertLevel {
    /// A number for a metrics gauge: 0 ok, 1 warn, 2 critical.
    pub fn as_gauge(&self) -> u8 {
        *self as u8
    }
}

/// Dead-letter alert thresholds: a count ABOVE a threshold alerts, as the seed's "> 100"
/// and "> 1000" did. [`new`](Self::new)`(100, 1000)` is the default: 100 dead letters are ok,
/// 101 warn, 1001 critical. Deserialising checks what `new` checks.
///
/// ```
/// use steadfast_dlq::{AlertLevel, AlertThresholds};
///
/// let t = AlertThresholds::new(100, 1000)?;
/// assert_eq!(t, AlertThresholds::default());
/// assert_eq!(t.check(100), AlertLevel::Ok);
/// assert_eq!(t.check(101), AlertLevel::Warn);
/// assert_eq!(t.check(1001), AlertLevel::Critical);
/// # Ok::<(), steadfast_dlq::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawAlertThresholds")]
pub struct AlertThresholds {
    warn: u64,
    critical: u64,
}

/// The serde form, checked through [`AlertThresholds::new`].
#[derive(Deserialize)]
struct RawAlertThresholds {
    warn: u64,
    critical: u64,
}

impl TryFrom<RawAlertThresholds> for AlertThresholds {
    type Error = crate::Error;

    fn try_from(raw: RawAlertThresholds) -> Result<Self, Self::Error> {
        AlertThresholds::new(raw.warn, raw.critical)
    }
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            warn: 100,
            critical: 1000,
        }
    }
}

impl AlertThresholds {
    /// Warn above `warn` dead letters, critical above `critical`. `warn` must not exceed
    /// `critical`.
    pub fn new(warn: u64, critical: u64) -> Result<Self, crate::Error> {
        if warn > critical {
            return Err(crate::Error::InvalidConfig(format!(
                "warn threshold {warn} is above critical threshold {critical}"
            )));
        }
        Ok(AlertThresholds { warn, critical })
    }

    /// The warning threshold: more dead letters than this warn.
    pub fn warn(&self) -> u64 {
        self.warn
    }

    /// The critical threshold: more dead letters than this are critical.
    pub fn critical(&self) -> u64 {
        self.critical
    }

    /// The level for `dead` dead letters.
    pub fn check(&self, dead: u64) -> AlertLevel {
        if dead > self.critical {
            AlertLevel::Critical
        } else if dead > self.warn {
            AlertLevel::Warn
        } else {
            AlertLevel::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_have_one_meaning_above() {
        let explicit = AlertThresholds::new(100, 1000).unwrap();
        assert_eq!(explicit, AlertThresholds::default());
        for t in [explicit, AlertThresholds::default()] {
            assert_eq!(t.check(0), AlertLevel::Ok);
            assert_eq!(t.check(100), AlertLevel::Ok);
            assert_eq!(t.check(101), AlertLevel::Warn);
            assert_eq!(t.check(1000), AlertLevel::Warn);
            assert_eq!(t.check(1001), AlertLevel::Critical);
        }
        // Equal thresholds skip straight from ok to critical.
        let t = AlertThresholds::new(5, 5).unwrap();
        assert_eq!(
            (t.check(5), t.check(6)),
            (AlertLevel::Ok, AlertLevel::Critical)
        );
        assert_eq!(
            AlertThresholds::new(0, 0).unwrap().check(1),
            AlertLevel::Critical
        );
    }

    #[test]
    fn thresholds_are_checked_however_they_are_made() {
        assert!(matches!(
            AlertThresholds::new(10, 9),
            Err(crate::Error::InvalidConfig(_))
        ));
        let t: AlertThresholds = serde_json::from_str(r#"{"warn":100,"critical":1000}"#).unwrap();
        assert_eq!(t, AlertThresholds::default());
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"warn":100,"critical":1000}"#
        );
        let err = serde_json::from_str::<AlertThresholds>(r#"{"warn":10,"critical":9}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("warn threshold 10 is above critical threshold 9"),
            "{err}"
        );
    }
}
