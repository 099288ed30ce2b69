//! The sender's conversation: loaded, advanced and saved with optimistic concurrency.
//!
//! Each step is one load → events → save; a version conflict (another worker saved the same
//! sender's conversation meanwhile) reloads and re-applies, so concurrent messages from one
//! user serialize instead of overwriting each other.

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
/// message is not recorded twice when the last attempt already saved it.
pub async fn begin(
    conversations: &Conversations,
    router: &Router,
    msg: &InboundMessage,
    text: &str,
    attempt: u32,
) -> Result<Begun, steadfast_state_machine::Error> {
    let mut round = 0;
    loop {
        let now = Utc::now();
        let (def, mut conv) = match conversations.load_with_definition(&msg.from).await? {
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
            )?;
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
            )?;
        } else if conv.context().intent.as_deref() != Some(service.as_str()) {
            // A topic switch inside an active agent conversation: the machine has no edge for
            // it (agent_active stays agent_active), so only the intent changes.
            conv.context_mut().intent = Some(service.clone());
        }
        match conversations.save(&msg.from, &mut conv).await {
            Ok(()) => {
                return Ok(Begun {
                    service,
                    reason,
                    conversation: conv,
                });
            }
            Err(e) if e.is_conflict() && round < CONFLICT_RETRIES => {
                metrics::counter!(crate::metrics::CONVERSATION_CONFLICTS).increment(1);
                round += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Records an event after the downstream answered (or failed). An event the current state
/// does not take (the conversation timed out or moved on meanwhile) is skipped.
pub async fn record(
    conversations: &Conversations,
    wa_id: &str,
    event: ConvEvent,
) -> Result<(), steadfast_state_machine::Error> {
    let mut round = 0;
    loop {
        let now = Utc::now();
        let Some((def, mut conv)) = conversations.load_with_definition(wa_id).await? else {
            return Ok(());
        };
        match def.send(&mut conv, event.clone(), now) {
            Ok(t) if t.ignored => return Ok(()),
            Ok(_) => {}
            Err(steadfast_state_machine::Error::NoTransition { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        match conversations.save(wa_id, &mut conv).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_conflict() && round < CONFLICT_RETRIES => {
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
