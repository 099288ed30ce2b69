//! One queued message, as a straight sequence of steps.
//!
//! 1. **Load** the sender's conversation, once.
//! 2. **Route** it (pure): the service, and the conversation as the downstream sees it (the
//!    user's message applied to a copy).
//! 3. **Call** the downstream through the service registry and its breakers.
//! 4. **Record the actions** its reply asks for, when any configured one: the saga
//!    `reply-actions/<wamid>` is created durably ([`crate::actions::Actions::start`]) and its
//!    steps run detached, on their own retries and breakers.
//! 5. **Send** its reply through the Graph API.
//! 6. **Save** the conversation, once: the user's message and the reply together
//!    ([`conversation::save`]; its conflict loop is `Machines::update_from`, the only one).
//!
//! Then the queue acks it (batched with the acks of messages that finish with it). There is
//! no separate "processed" marker: the queue remembers the dedup keys of done messages for the
//! de-duplication window (`remember_done`), so a Meta retry that arrives after the message was
//! processed is refused at ingestion as a duplicate, and the ack IS the processed marker:
//! marking and acking cannot disagree. On the happy path a message costs three store round
//! trips (conversation load, conversation save, its share of one ack write) and two commits,
//! plus the saga's creation when the reply asks for actions.
//!
//! Each step fails with a [`StepError`]; [`outcome`] turns it into the queue's [`Outcome`],
//! in that one place. Since nothing is saved before step 6, a failed attempt leaves the
//! conversation as it was and a retry does not record the user's message twice.
//!
//! **Why the actions are recorded between the call and the send.** Before the reply goes
//! out, a saga store failure is an ordinary retried attempt: nothing reached the user yet, and
//! the downstream call is repeated under the same `Idempotency-Key`. After it, the actions
//! could only be logged and lost. So once the user has the reply, its actions are durable; a
//! retried or redelivered message meets the saga already there (`Start::AlreadyExists`) and
//! starts nothing new. The other way round is accepted: when the send then fails for good,
//! the actions still run (the message dead-letters; a replay finds the saga and does not run
//! them again).
//!
//! When the outcome dead-letters the message (a permanent failure, or a retryable one on the
//! last attempt), the conversation records the user's message and the failure, and a failed
//! downstream sends the fallback reply: once per message, never per retry.
//!
//! A failure after the reply went out (the save, the marker) is logged, not retried: a retry
//! would send the reply twice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use steadfast_dlq::{Failure, Outcome};

use super::conversation::{self, Ending, Turn};
use super::downstream::{self, DownstreamError, DownstreamReply, DownstreamRequest};
use super::graph::{self, SendError};
use super::{Services, fallback_reply};
use crate::payload::InboundMessage;

/// How a call through a circuit breaker failed, for the downstream and the Graph API alike:
/// the four cases the queue treats differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// A call made while its breaker was closed failed (timeout, 5xx, 429, transport): an
    /// attempt, which says something about the message. Retried after `retry_after` (the
    /// server's `Retry-After`) or the queue's backoff; dead when attempts run out.
    Attempt {
        /// Error class (`downstream_http_503`, `graph_timeout`, ...).
        kind: String,
        /// What happened.
        message: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The breaker refused (or no endpoint was healthy): no call was made, which says
    /// nothing about the message.
    Refused {
        /// Error class (`downstream_unavailable`, `graph_breaker_open`).
        kind: String,
        /// What happened.
        message: String,
        /// When the breaker lets a probe through, when known.
        retry_after: Option<Duration>,
    },
    /// The call was a half-open probe and it failed: the other side is still down, which
    /// says nothing about the message either.
    ProbeFailed {
        /// Error class, as for an attempt.
        kind: String,
        /// What happened.
        message: String,
        /// When the breaker lets the next probe through, when known.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: a 4xx, a redirect, a reply too large, a bad `phone_number_id`.
    Permanent {
        /// Error class (`downstream_http_404`, `graph_redirect`, ...).
        kind: String,
        /// What happened.
        message: String,
    },
}

impl CallFailure {
    /// The error class recorded with the attempt.
    pub fn kind(&self) -> &str {
        match self {
            CallFailure::Attempt { kind, .. }
            | CallFailure::Refused { kind, .. }
            | CallFailure::ProbeFailed { kind, .. }
            | CallFailure::Permanent { kind, .. } => kind,
        }
    }

    /// What happened.
    pub fn message(&self) -> &str {
        match self {
            CallFailure::Attempt { message, .. }
            | CallFailure::Refused { message, .. }
            | CallFailure::ProbeFailed { message, .. }
            | CallFailure::Permanent { message, .. } => message,
        }
    }

    /// The downstream's error, `service` named in its message.
    pub fn downstream(service: &str, e: DownstreamError) -> Self {
        let kind = e.kind();
        match e {
            DownstreamError::Failed {
                message,
                retry_after,
                ..
            } => CallFailure::Attempt {
                kind,
                message,
                retry_after,
            },
            DownstreamError::Unavailable {
                message,
                retry_after,
            } => CallFailure::Refused {
                kind,
                message,
                retry_after,
            },
            DownstreamError::ProbeFailed {
                message,
                retry_after,
                ..
            } => CallFailure::ProbeFailed {
                kind,
                message,
                retry_after,
            },
            e @ (DownstreamError::Rejected { .. }
            | DownstreamError::Redirected { .. }
            | DownstreamError::TooLarge { .. }) => CallFailure::Permanent {
                kind,
                message: format!("{service}: {e}"),
            },
        }
    }

    /// The Graph API's error.
    pub fn reply(e: SendError) -> Self {
        let kind = e.kind();
        match e {
            SendError::Failed {
                message,
                retry_after,
                ..
            } => CallFailure::Attempt {
                kind,
                message,
                retry_after,
            },
            SendError::BreakerOpen { retry_after, .. } => CallFailure::Refused {
                message: e.to_string(),
                kind,
                retry_after,
            },
            SendError::ProbeFailed {
                message,
                retry_after,
                ..
            } => CallFailure::ProbeFailed {
                kind,
                message,
                retry_after,
            },
            e @ (SendError::Refused { .. }
            | SendError::Redirected { .. }
            | SendError::BadPhoneNumberId) => CallFailure::Permanent {
                kind,
                message: e.to_string(),
            },
        }
    }
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// Why a message's processing stopped: the step that failed, and how.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The queue payload is not an [`InboundMessage`] (kind `bad_payload`).
    #[error("unreadable queue payload: {0}")]
    BadPayload(String),
    /// Loading the conversation, or saving it when nothing was sent yet (kinds
    /// `store_timeout`, `conversation_store`).
    #[error(transparent)]
    Conversation(#[from] conversation::StoreError),
    /// Calling the downstream service.
    #[error("{0}")]
    Downstream(CallFailure),
    /// Recording the reply's actions (kind `saga_store`): retried, nothing was sent yet.
    #[error(transparent)]
    Actions(#[from] crate::actions::StartError),
    /// Sending the reply through the Graph API.
    #[error("{0}")]
    Reply(CallFailure),
}

impl StepError {
    /// Whether the user is sent the fallback reply when this failure dead-letters the
    /// message: when the downstream could not answer. A refusal by the downstream (4xx,
    /// redirect, too large) or a failed reply sends none, as before.
    fn sends_fallback(&self) -> bool {
        matches!(
            self,
            StepError::Downstream(
                CallFailure::Attempt { .. }
                    | CallFailure::Refused { .. }
                    | CallFailure::ProbeFailed { .. }
            )
        )
    }
}

fn retry(kind: &str, message: String, after: Option<Duration>) -> Outcome {
    let failure = Failure::retryable(kind, message);
    Outcome::Retry(match after {
        Some(d) => failure.after(d),
        None => failure,
    })
}

/// The queue's outcome for a failed step: the one place where step errors become outcomes.
pub fn outcome(error: &StepError) -> Outcome {
    match error {
        StepError::BadPayload(_) => Outcome::dead("bad_payload", error.to_string()),
        StepError::Conversation(e) => Outcome::retry(e.kind(), e.to_string()),
        StepError::Actions(e) => Outcome::retry(e.kind(), e.to_string()),
        StepError::Downstream(failure) | StepError::Reply(failure) => match failure {
            CallFailure::Attempt {
                kind,
                message,
                retry_after,
            } => retry(kind, message.clone(), *retry_after),
            // No call was made, or only a probe: neither says anything about the message, so
            // it waits for the breaker's next probe without spending an attempt. The queue
            // caps the wait at the policy's max delay; the horizon bounds the total.
            CallFailure::Refused {
                kind,
                message,
                retry_after,
            }
            | CallFailure::ProbeFailed {
                kind,
                message,
                retry_after,
            } => Outcome::snooze(
                kind.clone(),
                message.clone(),
                retry_after.unwrap_or(DEFAULT_SNOOZE),
            ),
            CallFailure::Permanent { kind, message } => {
                Outcome::dead(kind.clone(), message.clone())
            }
        },
    }
}

/// How long a message waits behind a breaker that did not say when it lets a probe through
/// (no endpoint healthy, every probe permit taken).
pub const DEFAULT_SNOOZE: Duration = Duration::from_secs(5);

/// Where a message stands in its retries: what decides whether a failure is its last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// This attempt's number (1 for the first).
    pub number: u32,
    /// The queue's maximum of real attempts.
    pub max: u32,
    /// The message has waited (retrying or snoozed) longer than `worker.retry_horizon_seconds`
    /// since its first failure or snooze: the queue dead-letters it at this failure.
    pub past_horizon: bool,
}

impl Attempt {
    /// Attempt `number` of `max`, within the horizon.
    pub fn new(number: u32, max: u32) -> Self {
        Self {
            number,
            max,
            past_horizon: false,
        }
    }
}

/// Whether `outcome` makes the message a dead letter at `attempt`: the same rule the queue
/// applies, so that the user hears the fallback exactly when the message goes dead.
pub fn dead_letters(outcome: &Outcome, attempt: Attempt) -> bool {
    match outcome {
        Outcome::Ack => false,
        Outcome::Retry(_) => attempt.number >= attempt.max || attempt.past_horizon,
        Outcome::Snooze(_) => attempt.past_horizon,
        Outcome::Dead(_) => true,
    }
}

/// How far a message got, for the dead-letter path.
#[derive(Debug, Default)]
struct Progress {
    /// Decided at routing.
    turn: Option<Turn>,
}

impl Services {
    /// The injected clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        let since_epoch = self
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_secs())
            .ok()
            .and_then(|secs| DateTime::from_timestamp(secs, since_epoch.subsec_nanos()))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Processes `job`, on attempt `attempt` of `max_attempts` (within the horizon), and
    /// says what the queue does with it.
    pub async fn process(&self, job: &InboundMessage, attempt: u32, max_attempts: u32) -> Outcome {
        self.process_at(job, Attempt::new(attempt, max_attempts))
            .await
    }

    /// As [`Services::process`], at a given [`Attempt`].
    pub async fn process_at(&self, job: &InboundMessage, attempt: Attempt) -> Outcome {
        let mut progress = Progress::default();
        let Err(error) = self.run(job, &mut progress).await else {
            return Outcome::Ack;
        };
        let outcome = outcome(&error);
        if dead_letters(&outcome, attempt) {
            self.dead_letter(job, &error, progress).await;
        }
        outcome
    }

    async fn run(&self, job: &InboundMessage, progress: &mut Progress) -> Result<(), StepError> {
        let store_timeout = self.config.storage.store_timeout;
        let now = self.now();
        let loaded = conversation::load(&self.conversations, &job.from, now, store_timeout).await?;

        let (service, reason) = conversation::route(&self.router, job, &loaded.1);
        metrics::counter!(crate::metrics::ROUTED, "service" => service.clone(), "reason" => reason.as_str())
            .increment(1);
        tracing::info!(service = %service, reason = reason.as_str(), "routed");
        let turn = Turn {
            text: job
                .text
                .clone()
                .unwrap_or_else(|| format!("[{}]", job.kind)),
            service,
        };
        let mut routed = loaded.1.clone();
        turn.apply(&loaded.0, &mut routed, now)
            .map_err(conversation::StoreError::Machine)?;
        progress.turn = Some(turn.clone());

        let reply = self.call_downstream(job, &turn, &routed).await?;
        self.actions
            .start(
                &job.message_id,
                &job.from,
                &job.correlation_id,
                &turn.service,
                &reply.actions,
            )
            .await?;
        // What is sent is what is recorded: both cut to WhatsApp's limit.
        let text = reply
            .reply
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(graph::cap_text);
        if let Some(text) = text {
            self.graph
                .send_text(&job.phone_number_id, &job.from, text)
                .await
                .map_err(|e| StepError::Reply(CallFailure::reply(e)))?;
        }

        let ending = Ending::Replied {
            text: text.map(str::to_owned),
            done: reply.done,
        };
        let saved = conversation::save(
            &self.conversations,
            &job.from,
            loaded,
            &turn,
            &ending,
            now,
            store_timeout,
        )
        .await;
        match saved {
            Ok(_) => {}
            // Nothing reached the user: the retry starts over from the same conversation.
            Err(e) if text.is_none() => return Err(e.into()),
            Err(e) => tracing::warn!(
                error = %e,
                "reply sent but the conversation not saved; a retry would send it twice"
            ),
        }
        Ok(())
    }

    async fn call_downstream(
        &self,
        job: &InboundMessage,
        turn: &Turn,
        routed: &conversation::Conversation,
    ) -> Result<DownstreamReply, StepError> {
        let request = DownstreamRequest {
            message_id: job.message_id.clone(),
            from: job.from.clone(),
            kind: job.kind.clone(),
            text: job.text.clone(),
            conversation_state: conversation::state_name(routed.state()),
            correlation_id: job.correlation_id.clone(),
            history: routed.context().last_messages.iter().cloned().collect(),
        };
        downstream::call(
            &self.registry,
            &self.http,
            &turn.service,
            &request,
            self.config.worker.max_response_bytes,
        )
        .await
        .map_err(|e| StepError::Downstream(CallFailure::downstream(&turn.service, e)))
    }

    /// The message is about to become a dead letter: the conversation records the user's
    /// message and the failure (one load and one save, on this rare path), and when the
    /// downstream could not answer, the user is sent the fallback reply. Failures here are
    /// logged: the dead letter keeps the message for an operator's replay.
    async fn dead_letter(&self, job: &InboundMessage, error: &StepError, progress: Progress) {
        let Some(turn) = progress.turn else {
            return;
        };
        let store_timeout = self.config.storage.store_timeout;
        let now = self.now();
        let ending = Ending::Failed {
            reason: error.to_string(),
        };
        let recorded =
            match conversation::load(&self.conversations, &job.from, now, store_timeout).await {
                Ok(loaded) => conversation::save(
                    &self.conversations,
                    &job.from,
                    loaded,
                    &turn,
                    &ending,
                    now,
                    store_timeout,
                )
                .await
                .map(drop),
                Err(e) => Err(e),
            };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "conversation failure not recorded");
        }
        if !error.sends_fallback() {
            return;
        }
        if let Some(text) = fallback_reply(&self.config, &turn.service) {
            if let Err(e) = self
                .graph
                .send_text(&job.phone_number_id, &job.from, graph::cap_text(&text))
                .await
            {
                tracing::warn!(error = %e, "fallback reply not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt() -> CallFailure {
        CallFailure::Attempt {
            kind: "downstream_http_503".into(),
            message: "jobs answered HTTP 503".into(),
            retry_after: Some(Duration::from_secs(7)),
        }
    }

    fn refused() -> CallFailure {
        CallFailure::Refused {
            kind: "downstream_unavailable".into(),
            message: "no healthy endpoint for service \"jobs\"".into(),
            retry_after: Some(Duration::from_secs(42)),
        }
    }

    fn probe() -> CallFailure {
        CallFailure::ProbeFailed {
            kind: "graph_http_503".into(),
            message: "Graph API answered HTTP 503".into(),
            retry_after: Some(Duration::from_secs(60)),
        }
    }

    fn permanent() -> CallFailure {
        CallFailure::Permanent {
            kind: "downstream_http_404".into(),
            message: "jobs: downstream refused the message with HTTP 404".into(),
        }
    }

    fn retried(o: &Outcome) -> (&str, &str, Option<Duration>, bool) {
        match o {
            Outcome::Retry(f) => (f.kind(), f.message(), f.retry_after(), f.is_retryable()),
            other => panic!("not a retry: {other:?}"),
        }
    }

    fn dead(o: &Outcome) -> (&str, &str) {
        match o {
            Outcome::Dead(f) => (f.kind(), f.message()),
            other => panic!("not dead: {other:?}"),
        }
    }

    fn snoozed(o: &Outcome) -> (&str, Duration) {
        match o {
            Outcome::Snooze(s) => {
                // A due time a moment from now: the delay, to the second.
                let d = s.delay_from(chrono::Utc::now());
                (
                    s.kind(),
                    Duration::from_secs(d.as_secs_f64().round() as u64),
                )
            }
            other => panic!("not snoozed: {other:?}"),
        }
    }

    #[test]
    fn a_refusal_without_a_wait_snoozes_for_the_default() {
        let mut refusal = refused();
        if let CallFailure::Refused { retry_after, .. } = &mut refusal {
            *retry_after = None;
        }
        let o = outcome(&StepError::Downstream(refusal));
        assert_eq!(snoozed(&o).1, DEFAULT_SNOOZE);
    }

    #[test]
    fn each_step_error_maps_to_its_outcome() {
        for step in [StepError::Downstream, StepError::Reply] {
            let o = outcome(&step(attempt()));
            assert_eq!(
                retried(&o),
                (
                    "downstream_http_503",
                    "jobs answered HTTP 503",
                    Some(Duration::from_secs(7)),
                    true
                )
            );
            // Refusals and failed probes snooze for the breaker's wait: no attempt spent.
            let o = outcome(&step(refused()));
            assert_eq!(
                snoozed(&o),
                ("downstream_unavailable", Duration::from_secs(42))
            );
            let o = outcome(&step(probe()));
            assert_eq!(snoozed(&o), ("graph_http_503", Duration::from_secs(60)));
            let o = outcome(&step(permanent()));
            assert_eq!(
                dead(&o),
                (
                    "downstream_http_404",
                    "jobs: downstream refused the message with HTTP 404"
                )
            );
        }
        let o = outcome(&StepError::Conversation(conversation::StoreError::Timeout(
            Duration::from_millis(300),
        )));
        assert_eq!(retried(&o).0, "store_timeout");
        assert_eq!(retried(&o).2, None, "the queue's backoff");
        let o = outcome(&StepError::BadPayload("missing field `from`".into()));
        assert_eq!(dead(&o).0, "bad_payload");
    }

    #[test]
    fn a_message_dead_letters_when_dead_or_out_of_attempts() {
        let at = Attempt::new;
        let retry = outcome(&StepError::Downstream(attempt()));
        assert!(!dead_letters(&retry, at(1, 3)));
        assert!(!dead_letters(&retry, at(2, 3)));
        assert!(dead_letters(&retry, at(3, 3)));
        let dead = outcome(&StepError::Downstream(permanent()));
        assert!(dead_letters(&dead, at(1, 3)));
        assert!(!dead_letters(&Outcome::Ack, at(3, 3)));
        // A snooze spends no attempt: never the last one, whatever the count...
        let snooze = outcome(&StepError::Downstream(refused()));
        assert!(!dead_letters(&snooze, at(3, 3)));
        // ...until the message has waited past the horizon, as a retry then too.
        let past = Attempt {
            past_horizon: true,
            ..at(1, 3)
        };
        assert!(dead_letters(&snooze, past));
        assert!(dead_letters(&retry, past));
    }

    #[test]
    fn only_a_downstream_that_could_not_answer_sends_the_fallback() {
        assert!(StepError::Downstream(attempt()).sends_fallback());
        assert!(StepError::Downstream(refused()).sends_fallback());
        assert!(StepError::Downstream(probe()).sends_fallback());
        assert!(!StepError::Downstream(permanent()).sends_fallback());
        assert!(!StepError::Reply(attempt()).sends_fallback());
    }

    #[test]
    fn downstream_and_graph_errors_are_classified_alike() {
        use CallFailure as F;
        let d = |e| CallFailure::downstream("jobs", e);
        assert!(matches!(
            d(DownstreamError::Failed {
                kind: "downstream_timeout".into(),
                message: "m".into(),
                retry_after: None
            }),
            F::Attempt { .. }
        ));
        assert!(matches!(
            d(DownstreamError::Unavailable {
                message: "m".into(),
                retry_after: None
            }),
            F::Refused { .. }
        ));
        assert!(matches!(
            d(DownstreamError::ProbeFailed {
                kind: "downstream_http_503".into(),
                message: "m".into(),
                retry_after: None
            }),
            F::ProbeFailed { .. }
        ));
        for e in [
            DownstreamError::Rejected { status: 404 },
            DownstreamError::Redirected { status: 307 },
            DownstreamError::TooLarge { limit: 10 },
        ] {
            let kind = e.kind();
            let f = d(e);
            assert!(matches!(f, F::Permanent { .. }), "{f:?}");
            assert_eq!(f.kind(), kind);
            assert!(f.message().starts_with("jobs: "), "{f}");
        }
        let g = CallFailure::reply;
        assert!(matches!(
            g(SendError::Failed {
                kind: "graph_http_503".into(),
                message: "m".into(),
                retry_after: None
            }),
            F::Attempt { .. }
        ));
        let f = g(SendError::BreakerOpen {
            state: "open",
            retry_after: Some(Duration::from_secs(3)),
        });
        assert_eq!(
            f,
            F::Refused {
                kind: "graph_breaker_open".into(),
                message: "graph_breaker_open: whatsapp-graph-api breaker is open".into(),
                retry_after: Some(Duration::from_secs(3)),
            }
        );
        assert!(matches!(
            g(SendError::ProbeFailed {
                kind: "graph_timeout".into(),
                message: "m".into(),
                retry_after: None
            }),
            F::ProbeFailed { .. }
        ));
        for e in [
            SendError::Refused { status: 400 },
            SendError::Redirected { status: 302 },
            SendError::BadPhoneNumberId,
        ] {
            assert!(matches!(g(e), F::Permanent { .. }));
        }
    }
}
