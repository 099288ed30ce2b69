//! The sender's conversation: loaded, advanced and saved with optimistic concurrency.
//!
//! Each step is one load → events → save; a version conflict (another worker saved the same
//! sender's conversation meanwhile) reloads and re-applies, so concurrent messages from one
//! user serialize instead of overwriting each other.
//!
//! Every store call is bounded by `storage.store_timeout`: a database that stops answering
//! (packets swallowed, no error ever returned) fails the step with [`StepError::Timeout`]
//! instead of holding the worker's slot and the sender's lock.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use steadfast_state_machine::conversation::{self, ConvContext, ConvEvent, ConvState, Role};
use steadfast_state_machine::{Instance, Machines};

use crate::payload::InboundMessage;
use crate::routing::{RouteReason, Router};

/// The typed conversation store.
pub type Conversations = Machines<ConvState, ConvEvent, ConvContext>;
/// One conversation.
pub type Conversation = Instance<ConvState, ConvContext>;

/// Reload-and-retry rounds on a version conflict.
const CONFLICT_RETRIES: u32 = 8;

/// Why a conversation step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A store call did not answer in time (kind `store_timeout`): retryable; the message's
    /// lease and the queue's backoff bring it back.
    #[error("conversation store did not answer within {0:?}")]
    Timeout(Duration),
    /// The machine or its store failed (kind `conversation_store`).
    #[error(transparent)]
    Machine(#[from] steadfast_state_machine::Error),
}

impl StepError {
    /// The error class recorded with the attempt.
    pub fn kind(&self) -> &'static str {
        match self {
            StepError::Timeout(_) => "store_timeout",
            StepError::Machine(_) => "conversation_store",
        }
    }
}

/// One store call, bounded by `after`.
async fn bounded<T>(
    after: Duration,
    call: impl Future<Output = Result<T, steadfast_state_machine::Error>>,
) -> Result<T, StepError> {
    match tokio::time::timeout(after, call).await {
        Ok(result) => result.map_err(StepError::Machine),
        Err(_) => Err(StepError::Timeout(after)),
    }
}

/// The snake_case name of a state (as sent downstream).
pub fn state_name(state: ConvState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{state:?}"))
}

/// What [`begin`] decided.
#[derive(Debug)]
pub struct Begun {
    /// The service the message goes to.
    pub service: String,
    /// Why.
    pub reason: RouteReason,
    /// The conversation as saved.
    pub conversation: Conversation,
}

fn in_conversation(state: ConvState) -> bool {
    !matches!(
        state,
        ConvState::Idle | ConvState::Completed | ConvState::Error
    )
}

/// Feeds the user's message to the conversation and routes it. On a retry (attempt > 1) the
/// message is not recorded twice when the last attempt already saved it. Each store call
/// may take `store_timeout`.
pub async fn begin(
    conversations: &Conversations,
    router: &Router,
    msg: &InboundMessage,
    text: &str,
    attempt: u32,
    store_timeout: Duration,
) -> Result<Begun, StepError> {
    let mut round = 0;
    loop {
        let now = Utc::now();
        let (def, mut conv) =
            match bounded(store_timeout, conversations.load_with_definition(&msg.from)).await? {
                Some(found) => found,
                None => (
                    conversations.definition().clone(),
                    conversations
                        .definition()
                        .new_instance(ConvContext::default(), now),
                ),
            };
        let current = in_conversation(conv.state())
            .then(|| conv.context().intent.clone())
            .flatten();
        let recorded = attempt > 1
            && conv
                .context()
                .last_messages
                .back()
                .is_some_and(|m| m.role == Role::User && m.text == text);
        if !recorded {
            def.send(
                &mut conv,
                ConvEvent::UserMessage {
                    text: text.to_owned(),
                },
                now,
            )
            .map_err(StepError::Machine)?;
        }
        let (service, reason) = router.route(msg, current.as_deref());
        if conv.state() == ConvState::ProcessingIntent {
            def.send(
                &mut conv,
                ConvEvent::IntentDetected {
                    intent: service.clone(),
                    needs_confirmation: false,
                },
                now,
            )
            .map_err(StepError::Machine)?;
        } else if conv.context().intent.as_deref() != Some(service.as_str()) {
            // A topic switch inside an active agent conversation: the machine has no edge for
            // it (agent_active stays agent_active), so only the intent changes.
            conv.context_mut().intent = Some(service.clone());
        }
        match bounded(store_timeout, conversations.save(&msg.from, &mut conv)).await {
            Ok(()) => {
                return Ok(Begun {
                    service,
                    reason,
                    conversation: conv,
                });
            }
            Err(StepError::Machine(e)) if e.is_conflict() && round < CONFLICT_RETRIES => {
                metrics::counter!(crate::metrics::CONVERSATION_CONFLICTS).increment(1);
                round += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Records an event after the downstream answered (or failed). An event the current state
/// does not take (the conversation timed out or moved on meanwhile) is skipped. Each store
/// call may take `store_timeout`.
pub async fn record(
    conversations: &Conversations,
    wa_id: &str,
    event: ConvEvent,
    store_timeout: Duration,
) -> Result<(), StepError> {
    let mut round = 0;
    loop {
        let now = Utc::now();
        let Some((def, mut conv)) =
            bounded(store_timeout, conversations.load_with_definition(wa_id)).await?
        else {
            return Ok(());
        };
        match def.send(&mut conv, event.clone(), now) {
            Ok(t) if t.ignored => return Ok(()),
            Ok(_) => {}
            Err(steadfast_state_machine::Error::NoTransition { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        match bounded(store_timeout, conversations.save(wa_id, &mut conv)).await {
            Ok(()) => return Ok(()),
            Err(StepError::Machine(e)) if e.is_conflict() && round < CONFLICT_RETRIES => {
                metrics::counter!(crate::metrics::CONVERSATION_CONFLICTS).increment(1);
                round += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The conversation definition the service runs (the crate's pre-built one: 30 minutes idle
/// in `awaiting_input` / `agent_active` times out back to `idle`).
pub fn definition()
-> std::sync::Arc<steadfast_state_machine::Definition<ConvState, ConvEvent, ConvContext>> {
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
        let conversations = Conversations::new(definition(), store.clone());
        let router = Router::new(Vec::new(), "ai-agent".into());
        let timeout = Duration::from_millis(300);
        let start = tokio::time::Instant::now();
        let err = begin(&conversations, &router, &message(), "hi", 1, timeout)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StepError::Timeout(t) if t == timeout),
            "{err}"
        );
        assert_eq!(err.kind(), "store_timeout");
        assert_eq!(start.elapsed(), timeout, "one bounded call, virtual time");
        let err = record(
            &conversations,
            "250788123456",
            ConvEvent::Fail { reason: "x".into() },
            timeout,
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), "store_timeout");
        // The store answers again: the same step goes through.
        store.stalled.store(false, Ordering::SeqCst);
        let begun = begin(&conversations, &router, &message(), "hi", 2, timeout)
            .await
            .unwrap();
        assert_eq!(begun.service, "ai-agent");
    }
}
