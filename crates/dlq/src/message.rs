//! The message model: what is enqueued, what is stored, and the lease a claim hands out.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

/// The id of a stored message (a UUID v7, so ids sort by creation time; paging uses that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        MessageId(Uuid::now_v7())
    }

    /// Wraps an existing UUID (e.g. from a URL path).
    pub const fn from_uuid(uuid: Uuid) -> Self {
        MessageId(uuid)
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for MessageId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(MessageId)
            .map_err(|e| Error::InvalidInput(format!("message id {s:?}: {e}")))
    }
}

/// Where a message is in its life.
///
/// `pending` → (claim) `running` → (ack) `done`; (fail) → `retrying` → (claim) `running` ...;
/// exhausted or non-retryable → `dead`; an operator replay moves `dead` back to `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its first attempt (or replayed by an operator).
    Pending,
    /// Claimed by a worker that holds its lease.
    Running,
    /// Failed at least once; due again at `run_at`.
    Retrying,
    /// A dead letter: attempts exhausted or a non-retryable error. Waits for an operator.
    Dead,
    /// Processed and acknowledged. Kept until retention prunes it.
    Done,
}

impl State {
    /// Every state, in life order.
    pub const ALL: [State; 5] = [
        State::Pending,
        State::Running,
        State::Retrying,
        State::Dead,
        State::Done,
    ];

    /// The stored name (`"pending"`, ...).
    pub const fn as_str(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Retrying => "retrying",
            State::Dead => "dead",
            State::Done => "done",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| Error::InvalidInput(format!("unknown state {s:?}")))
    }
}

/// The highest priority value (lowest urgency). Priorities run `0..=9`, 0 is claimed first.
pub const MAX_PRIORITY: u8 = 9;

/// A message to enqueue. Build it with [`NewMessage::new`] and the chained setters; it is
/// validated when enqueued (queue name, priority range, dedup key length).
///
/// Defaults: priority 0 (most urgent, as in Oban/River), due now, no dedup key, max attempts
/// from the queue's retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub(crate) queue: String,
    pub(crate) payload: serde_json::Value,
    pub(crate) dedup_key: Option<String>,
    pub(crate) priority: u8,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) delay: Duration,
    pub(crate) correlation_id: Option<String>,
    pub(crate) trace_context: Option<String>,
    pub(crate) group: Option<String>,
}

/// The longest accepted queue name, dedup key or correlation id, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// The longest accepted trace context ([`NewMessage::trace_context`]), in bytes: room for a
/// W3C `traceparent` (55 bytes) and a full `tracestate` (at most 32 members, 512 bytes by the
/// W3C's own advice) with separators.
pub const MAX_TRACE_CONTEXT_LEN: usize = 1024;

impl NewMessage {
    /// A message for `queue` carrying `payload`.
    pub fn new(queue: impl Into<String>, payload: serde_json::Value) -> Self {
        NewMessage {
            queue: queue.into(),
            payload,
            dedup_key: None,
            priority: 0,
            max_attempts: None,
            delay: Duration::ZERO,
            correlation_id: None,
            trace_context: None,
            group: None,
        }
    }

    /// The de-duplication key (e.g. a WhatsApp `wamid`): while a message with this key in
    /// this queue is not `done`, enqueueing another returns the existing id.
    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    /// Priority `0..=9`; 0 is claimed first. Out of range is rejected at enqueue.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    /// Attempts in all before the message is dead (overrides the queue's retry policy).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Make the message due `delay` from now instead of at once.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// A correlation id carried from the request to the worker's logs.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// The trace context of the code that enqueued the message, kept with it so that the
    /// worker's spans can join the producer's trace (SQS's `AWSTraceHeader`, River's and Oban's
    /// job metadata serve the same purpose).
    ///
    /// Opaque to the queue: typically a W3C `traceparent`, written by whatever tracing library
    /// the service uses; the crate stores it unchanged (at most [`MAX_TRACE_CONTEXT_LEN`]
    /// bytes), returns it with every claim, and keeps it across retries and replays, so every
    /// attempt of a message, a dead letter's included, can be put in the same trace.
    pub fn trace_context(mut self, context: impl Into<String>) -> Self {
        self.trace_context = Some(context.into());
        self
    }

    /// The ordering group (SQS FIFO's `MessageGroupId`; e.g. the sender's phone number).
    ///
    /// Messages of one group run one at a time, in enqueue order, on any number of workers
    /// and processes: a claim never returns a message while an earlier message of its group
    /// (by id, i.e. enqueue order) is `pending`, `retrying` or `running`. A `dead` or `done`
    /// message no longer holds its group back. Messages without a group are unaffected.
    pub fn group(mut self, key: impl Into<String>) -> Self {
        self.group = Some(key.into());
        self
    }

    /// The ordering group, if any.
    pub fn group_key(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// The queue.
    pub fn queue_name(&self) -> &str {
        &self.queue
    }

    /// The dedup key, if any.
    pub fn key(&self) -> Option<&str> {
        self.dedup_key.as_deref()
    }

    /// Checks the fields a store would reject.
    pub fn validate(&self) -> Result<(), Error> {
        check_name("queue name", &self.queue)?;
        if let Some(key) = &self.dedup_key {
            check_name("dedup key", key)?;
        }
        if let Some(group) = &self.group {
            check_name("group key", group)?;
        }
        if let Some(id) = &self.correlation_id {
            if id.len() > MAX_KEY_LEN {
                return Err(Error::InvalidInput(format!(
                    "correlation id longer than {MAX_KEY_LEN} bytes"
                )));
            }
        }
        if let Some(context) = &self.trace_context {
            if context.len() > MAX_TRACE_CONTEXT_LEN {
                return Err(Error::InvalidInput(format!(
                    "trace context longer than {MAX_TRACE_CONTEXT_LEN} bytes"
                )));
            }
        }
        if self.priority > MAX_PRIORITY {
            return Err(Error::InvalidInput(format!(
                "priority must be 0..={MAX_PRIORITY}, got {}",
                self.priority
            )));
        }
        if self.max_attempts == Some(0) {
            return Err(Error::InvalidInput(
                "max_attempts must be at least 1".to_owned(),
            ));
        }
        if chrono::Duration::from_std(self.delay).is_err() {
            return Err(Error::InvalidInput(format!(
                "delay {:?} is too long",
                self.delay
            )));
        }
        Ok(())
    }
}

pub(crate) fn check_name(what: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::InvalidInput(format!("{what} must not be empty")));
    }
    if value.len() > MAX_KEY_LEN {
        return Err(Error::InvalidInput(format!(
            "{what} longer than {MAX_KEY_LEN} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::InvalidInput(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

/// What `enqueue` did with one message: stored it, or found it already queued under its
/// dedup key. Both carry the id to use from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "id", rename_all = "snake_case")]
pub enum Enqueued {
    /// A new message was stored.
    New(MessageId),
    /// A message with the same dedup key is already in the queue (not `done`): its id.
    Duplicate(MessageId),
}

impl Enqueued {
    /// The message's id, new or existing.
    pub fn id(&self) -> MessageId {
        match *self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }

    /// Whether the message was already queued.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Enqueued::Duplicate(_))
    }
}

/// The error of one failed attempt, kept in the message's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// The attempt (1-based) that failed.
    pub attempt: u32,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// What went wrong.
    pub message: String,
    /// A short machine-readable class (`"timeout"`, `"http_503"`, `"lease_expired"`, ...), used
    /// to filter dead letters.
    pub kind: String,
    /// Whether this entry is a snooze ([`Outcome::Snooze`](crate::Outcome::Snooze)): the
    /// message was rescheduled without spending the attempt, so `attempt` was given back.
    /// Absent in rows written before snoozes existed (read as `false`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub snoozed: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The error kind recorded when a lease expires and the message is rescued by another claim.
pub const LEASE_EXPIRED: &str = "lease_expired";

/// The kind of the final history entry of a message that became dead because it had been
/// waiting (retrying or snoozed) longer than its queue's horizon
/// ([`QueueConfigBuilder::queue_horizon`](crate::QueueConfigBuilder::queue_horizon)).
pub const HORIZON_PASSED: &str = "horizon_passed";

/// A stored message, as claims, inspection and listing return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Its id.
    pub id: MessageId,
    /// The queue it belongs to.
    pub queue: String,
    /// The dedup key, if any.
    pub dedup_key: Option<String>,
    /// The payload.
    pub payload: serde_json::Value,
    /// `0..=9`, 0 claimed first.
    pub priority: u8,
    /// Where it is in its life.
    pub state: State,
    /// Attempts started so far (a claim starts one).
    pub attempts: u32,
    /// Attempts in all before it is dead.
    pub max_attempts: u32,
    /// When it is next claimable: due time for `pending`/`retrying`, the lease expiry for
    /// `running` (an expired lease makes it claimable again).
    pub run_at: DateTime<Utc>,
    /// The token of the current lease holder (`running` only).
    pub lease_owner: Option<Uuid>,
    /// When the current lease expires (`running` only).
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The error of every failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
    /// The correlation id given at enqueue.
    pub correlation_id: Option<String>,
    /// The trace context given at enqueue ([`NewMessage::trace_context`]), unchanged.
    #[serde(default)]
    pub trace_context: Option<String>,
    /// The ordering group given at enqueue ([`NewMessage::group`]).
    #[serde(default)]
    pub group_key: Option<String>,
    /// When it started waiting: its first retryable failure or snooze since it was enqueued or
    /// replayed. The queue's horizon counts from here. `None` until then.
    #[serde(default)]
    pub waiting_since: Option<DateTime<Utc>>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Message {
    /// The most recent error, if any attempt failed.
    pub fn last_error(&self) -> Option<&AttemptError> {
        self.errors.last()
    }
}

/// Proof of a claim: the message id, the fencing token, and what `fail` needs to decide
/// between retry and dead without another read.
///
/// Every settling write (`ack`, `fail`, `extend`, `release`) checks the token: once a lease
/// expired and another worker re-claimed the message, the old lease is rejected with
/// [`Error::LeaseLost`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The claimed message.
    pub id: MessageId,
    /// The queue it belongs to (selects the retry policy).
    pub queue: String,
    /// The fencing token (new on every claim).
    pub token: Uuid,
    /// The attempt this claim started (1-based).
    pub attempt: u32,
    /// The message's max attempts.
    pub max_attempts: u32,
    /// When the lease expires unless extended.
    pub expires_at: DateTime<Utc>,
    /// The message's [`Message::waiting_since`] at claim time (it cannot change while the
    /// lease is held): `fail` and `snooze` decide the horizon from it without another read.
    #[serde(default)]
    pub waiting_since: Option<DateTime<Utc>>,
}

/// A claimed message and its lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The message as it was claimed (state `running`, attempts incremented).
    pub message: Message,
    /// The lease to settle it with.
    pub lease: Lease,
}

/// Why an attempt failed, and whether it is worth another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub(crate) kind: String,
    pub(crate) message: String,
    pub(crate) retryable: bool,
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    /// A failure worth retrying: the message goes `retrying` at now + the policy's backoff, or
    /// `dead` when its attempts are exhausted.
    pub fn retryable(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            kind: kind.into(),
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    /// A failure no retry can fix (bad payload, 4xx): the message goes `dead` at once.
    pub fn fatal(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            retryable: false,
            ..Failure::retryable(kind, message)
        }
    }

    /// Retry after `delay` instead of the policy's backoff (e.g. a server's `Retry-After`).
    /// The store caps it at the queue policy's `max_delay`, so a hostile or broken
    /// `Retry-After` cannot park a message for years.
    pub fn after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The error kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The error message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether another attempt may fix it.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The delay asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// A reschedule that spends no attempt (River's snooze): the handler did not really try, e.g.
/// an open circuit breaker refused the call. The claim's attempt is given back, the snooze is
/// recorded in the message's history (an [`AttemptError`] with `snoozed: true`) and the message
/// is due again at the snooze's time, capped at the queue policy's `max_delay`.
///
/// `max_attempts` keeps counting real attempts only; the queue's horizon
/// ([`QueueConfigBuilder::queue_horizon`](crate::QueueConfigBuilder::queue_horizon)) bounds how
/// long a message may keep snoozing.
///
/// ```
/// use std::time::Duration;
/// use steadfast_dlq::{Outcome, Snooze};
///
/// let refused = Snooze::after("breaker_open", "downstream breaker is open", Duration::from_secs(30));
/// assert_eq!(refused.kind(), "breaker_open");
/// let _outcome = Outcome::Snooze(refused);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snooze {
    pub(crate) kind: String,
    pub(crate) message: String,
    pub(crate) due: SnoozeDue,
}

/// When a snoozed message is due again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnoozeDue {
    After(Duration),
    At(DateTime<Utc>),
}

impl Snooze {
    /// Due again `delay` from now (e.g. a breaker's `retry_after`).
    pub fn after(kind: impl Into<String>, message: impl Into<String>, delay: Duration) -> Self {
        Snooze {
            kind: kind.into(),
            message: message.into(),
            due: SnoozeDue::After(delay),
        }
    }

    /// Due again at `at` (a time in the past means now).
    pub fn until(kind: impl Into<String>, message: impl Into<String>, at: DateTime<Utc>) -> Self {
        Snooze {
            kind: kind.into(),
            message: message.into(),
            due: SnoozeDue::At(at),
        }
    }

    /// The kind recorded in the history (`"breaker_open"`, ...).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The message recorded in the history.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How long after `now` the message is due (zero for a time already past; not capped).
    pub fn delay_from(&self, now: DateTime<Utc>) -> Duration {
        match self.due {
            SnoozeDue::After(d) => d,
            SnoozeDue::At(at) => (at - now).to_std().unwrap_or_default(),
        }
    }
}

impl fmt::Display for Snooze {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (snoozed): {}", self.kind, self.message)
    }
}
