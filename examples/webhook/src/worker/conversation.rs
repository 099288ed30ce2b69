//! The sender's conversation: loaded once, advanced in memory, saved once.
//!
//! A message is one turn: [`load`] reads the conversation (or starts one), [`route`] decides
//! the service and [`Turn::apply`] feeds the user's message to a copy (what the downstream
//! is shown), and after the reply went out [`save`] applies the message and its ending to the
//! loaded conversation in one version-checked save. The one conflict loop is
//! [`Machines::update_from`]: when another worker saved the same sender's conversation
//! meanwhile, it reloads and re-applies the turn, so concurrent messages from one user
//! serialize instead of overwriting each other. A failed attempt saves nothing, so a retry
//! does not record the user's message twice.
//!
//! Every store call is bounded by `storage.store_timeout`: a database that stops answering
//! (packets swallowed, no error ever returned) fails the step with [`StoreError::Timeout`]
//! instead of holding the worker's slot and the sender's lock.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use steadfast_state_machine::conversation::{self, ConvContext, ConvEvent, ConvState};
use steadfast_state_machine::{Definition, Instance, Machines, Restored, SnapshotStore};

use tracing::Instrument;

use crate::payload::InboundMessage;
use crate::routing::{RouteReason, Router};

/// The typed conversation store.
pub type Conversations = Machines<ConvState, ConvEvent, ConvContext>;
/// One conversation.
pub type Conversation = Instance<ConvState, ConvContext>;
/// A conversation as loaded, with the definition it runs on.
pub type Loaded = Restored<ConvState, ConvEvent, ConvContext>;
type Def = Definition<ConvState, ConvEvent, ConvContext>;

/// Reload-and-retry rounds on a version conflict.
const CONFLICT_RETRIES: u32 = 8;

/// The conversation store the worker uses: the crate's definition on `store`.
pub fn conversations(store: Arc<dyn SnapshotStore>) -> Conversations {
    Conversations::new(definition(), store).conflict_retries(CONFLICT_RETRIES)
}

/// Why the conversation could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A store call did not answer in time (kind `store_timeout`): retryable; the message's
    /// lease and the queue's backoff bring it back.
    #[error("conversation store did not answer within {0:?}")]
    Timeout(Duration),
    /// The machine or its store failed (kind `conversation_store`).
    #[error(transparent)]
    Machine(#[from] steadfast_state_machine::Error),
}

impl StoreError {
    /// The error class recorded with the attempt.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Timeout(_) => "store_timeout",
            StoreError::Machine(_) => "conversation_store",
        }
    }
}

/// One store call, bounded by `after`; with traces on, a db client span named after the
/// operation (`conversation load`, `conversation save`).
async fn bounded<T>(
    operation: &'static str,
    after: Duration,
    call: impl Future<Output = Result<T, steadfast_state_machine::Error>>,
) -> Result<T, StoreError> {
    let span = if crate::telemetry::enabled() {
        tracing::info_span!(
            "db",
            otel.name = %format_args!("conversation {operation}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.operation.name = operation,
            db.collection.name = "conversations",
            error.type = tracing::field::Empty,
        )
    } else {
        tracing::Span::none()
    };
    let result = match tokio::time::timeout(after, call)
        .instrument(span.clone())
        .await
    {
        Ok(result) => result.map_err(StoreError::Machine),
        Err(_) => Err(StoreError::Timeout(after)),
    };
    if let Err(e) = &result {
        span.record("error.type", e.kind());
        span.record("otel.status_code", "error");
    }
    result
}

/// The snake_case name of a state (as sent downstream).
pub fn state_name(state: ConvState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{state:?}"))
}

fn in_conversation(state: ConvState) -> bool {
    !matches!(
        state,
        ConvState::Idle | ConvState::Completed | ConvState::Error
    )
}

/// The conversation of `wa_id`, or a new one started at `now` (version 0). One bounded load.
pub async fn load(
    conversations: &Conversations,
    wa_id: &str,
    now: DateTime<Utc>,
    store_timeout: Duration,
) -> Result<Loaded, StoreError> {
    bounded("load", store_timeout, conversations.load_or_new(wa_id, now)).await
}

/// The service `msg` goes to, given the conversation it arrives in: a keyword wins, else the
/// service an ongoing conversation is with, else the default. Pure.
pub fn route(router: &Router, msg: &InboundMessage, conv: &Conversation) -> (String, RouteReason) {
    let current = in_conversation(conv.state())
        .then(|| conv.context().intent.clone())
        .flatten();
    router.route(msg, current.as_deref())
}

/// What one message does to its conversation, decided once and re-applied as is on a
/// conflict: the user's text, and the service it was routed to (and called).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The user's text (`[image]` and the like for a message without one).
    pub text: String,
    /// The service the message went to.
    pub service: String,
}

/// How a turn ended, as the conversation records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The reply that was sent (`None`: the downstream had nothing to say), and whether the
    /// downstream considers the conversation finished.
    Replied {
        /// The text as sent (cut to WhatsApp's limit).
        text: Option<String>,
        /// The conversation is finished.
        done: bool,
    },
    /// The message was dead-lettered for this reason (the conversation goes to `fallback`,
    /// or `error` after repeated failures).
    Failed {
        /// What failed.
        reason: String,
    },
}

impl Turn {
    /// Feeds the user's message to `conv` at `now` and records the service: the intent of a
    /// new conversation, or a topic switch inside an active one (the machine has no edge for
    /// that: `agent_active` stays `agent_active`, only the intent changes).
    ///
    /// # Errors
    /// The machine's, when the stored conversation is in a state the definition does not know.
    pub fn apply(
        &self,
        def: &Def,
        conv: &mut Conversation,
        now: DateTime<Utc>,
    ) -> Result<(), steadfast_state_machine::Error> {
        def.send(
            conv,
            ConvEvent::UserMessage {
                text: self.text.clone(),
            },
            now,
        )?;
        if conv.state() == ConvState::ProcessingIntent {
            def.send(
                conv,
                ConvEvent::IntentDetected {
                    intent: self.service.clone(),
                    needs_confirmation: false,
                },
                now,
            )?;
        } else if conv.context().intent.as_deref() != Some(self.service.as_str()) {
            conv.context_mut().intent = Some(self.service.clone());
        }
        Ok(())
    }
}

impl Ending {
    /// Records the ending in `conv` at `now`. An event the current state does not take (the
    /// conversation moved on meanwhile) is skipped: the turn is still saved.
    fn apply(
        &self,
        def: &Def,
        conv: &mut Conversation,
        now: DateTime<Utc>,
    ) -> Result<(), steadfast_state_machine::Error> {
        let event = match self {
            Ending::Replied { text: None, .. } => return Ok(()),
            Ending::Replied {
                text: Some(text),
                done,
            } => ConvEvent::AgentReply {
                text: text.clone(),
                done: *done,
            },
            Ending::Failed { reason } => ConvEvent::Fail {
                reason: reason.clone(),
            },
        };
        match def.send(conv, event, now) {
            Ok(_) | Err(steadfast_state_machine::Error::NoTransition { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Saves `turn` and its `ending` in `wa_id`'s conversation: applied to `loaded` (the copy
/// [`load`] returned) and saved version-checked; on a conflict reloaded and re-applied
/// ([`Machines::update_from`]). One save on the happy path, bounded by `store_timeout` as a
/// whole.
pub async fn save(
    conversations: &Conversations,
    wa_id: &str,
    loaded: Loaded,
    turn: &Turn,
    ending: &Ending,
    now: DateTime<Utc>,
    store_timeout: Duration,
) -> Result<Conversation, StoreError> {
    let mut rounds = 0u32;
    let update = conversations.update_from(wa_id, loaded, now, |def, conv| {
        rounds += 1;
        if rounds > 1 {
            metrics::counter!(crate::metrics::CONVERSATION_CONFLICTS).increment(1);
        }
        turn.apply(def, conv, now)?;
        ending.apply(def, conv, now)
    });
    bounded("save", store_timeout, update)
        .await
        .map(|((), conv)| conv)
}

/// The conversation definition the service runs (the crate's pre-built one: 30 minutes idle
/// in `awaiting_input` / `agent_active` times out back to `idle`).
pub fn definition() -> Arc<Def> {
    conversation::definition()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use steadfast_state_machine::{MemorySnapshots, Snapshot, SnapshotStore};

    /// A snapshot store that never answers while `stalled` (a black-holed connection).
    struct Stalling {
        inner: MemorySnapshots,
        stalled: AtomicBool,
    }

    impl Stalling {
        async fn gate(&self) {
            if self.stalled.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
        }
    }

    #[async_trait::async_trait]
    impl SnapshotStore for Stalling {
        async fn load(
            &self,
            key: &str,
        ) -> Result<Option<Snapshot>, steadfast_state_machine::Error> {
            self.gate().await;
            self.inner.load(key).await
        }
        async fn save(
            &self,
            key: &str,
            expected_version: u64,
            instance: &serde_json::Value,
            due_at: Option<chrono::DateTime<Utc>>,
        ) -> Result<u64, steadfast_state_machine::Error> {
            self.gate().await;
            self.inner
                .save(key, expected_version, instance, due_at)
                .await
        }
        async fn due(
            &self,
            now: chrono::DateTime<Utc>,
            limit: usize,
        ) -> Result<Vec<Snapshot>, steadfast_state_machine::Error> {
            self.inner.due(now, limit).await
        }
        async fn delete(&self, key: &str) -> Result<bool, steadfast_state_machine::Error> {
            self.inner.delete(key).await
        }
        async fn prune_idle(
            &self,
            saved_before: chrono::DateTime<Utc>,
            limit: usize,
        ) -> Result<u64, steadfast_state_machine::Error> {
            self.inner.prune_idle(saved_before, limit).await
        }
    }

    fn message() -> InboundMessage {
        serde_json::from_value(serde_json::json!({
            "message_id": "wamid.T", "from": "250788123456", "type": "text", "text": "hi",
            "phone_number_id": "1", "correlation_id": "c", "timestamp": 0,
        }))
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_never_answers_fails_the_step_after_the_store_timeout() {
        let store = Arc::new(Stalling {
            inner: MemorySnapshots::new(),
            stalled: AtomicBool::new(true),
        });
        let conversations = conversations(store.clone());
        let router = Router::new(Vec::new(), "ai-agent".into());
        let timeout = Duration::from_millis(300);
        let now = Utc::now();
        let start = tokio::time::Instant::now();
        let err = load(&conversations, "250788123456", now, timeout)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Timeout(t) if t == timeout),
            "{err}"
        );
        assert_eq!(err.kind(), "store_timeout");
        assert_eq!(start.elapsed(), timeout, "one bounded call, virtual time");

        // Loaded before the stall, saved during it: the save is bounded too.
        store.stalled.store(false, Ordering::SeqCst);
        let loaded = load(&conversations, "250788123456", now, timeout)
            .await
            .unwrap();
        let (service, _) = route(&router, &message(), &loaded.1);
        assert_eq!(service, "ai-agent");
        let turn = Turn {
            text: "hi".into(),
            service,
        };
        let ending = Ending::Replied {
            text: Some("hello".into()),
            done: false,
        };
        store.stalled.store(true, Ordering::SeqCst);
        let err = save(
            &conversations,
            "250788123456",
            loaded.clone(),
            &turn,
            &ending,
            now,
            timeout,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), "store_timeout");
        // The store answers again: the same step goes through.
        store.stalled.store(false, Ordering::SeqCst);
        let conv = save(
            &conversations,
            "250788123456",
            loaded,
            &turn,
            &ending,
            now,
            timeout,
        )
        .await
        .unwrap();
        assert_eq!(conv.state(), ConvState::AgentActive);
        assert_eq!(conv.context().last_messages.len(), 2);
    }
}
