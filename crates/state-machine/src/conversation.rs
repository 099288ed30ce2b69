//! The pre-built conversation machine for chat channels (e.g. one per WhatsApp sender).
//!
//! ```text
//! idle ──start──▶ active.awaiting_input          idle ──user_message──▶ active.processing_intent
//! active {
//!   awaiting_input ──user_message──▶ processing_intent        (after 30 min: timeout)
//!   processing_intent ──intent_detected [needs_confirmation]──▶ awaiting_confirmation
//!   processing_intent ──intent_detected──▶ agent_active
//!   processing_intent ──user_message──▶ processing_intent
//!   agent_active ──user_message / agent_reply──▶ agent_active   (after 30 min: timeout)
//!   agent_active ──agent_reply [done]──▶ completed
//!   awaiting_confirmation ──confirm──▶ agent_active | ──reject──▶ awaiting_input
//!   awaiting_confirmation ──user_message──▶ processing_intent
//!   fallback ──user_message──▶ processing_intent
//! }
//! active ──fail [attempts < 3]──▶ fallback (attempts += 1) | ──fail──▶ error
//! active ──timeout / reset──▶ idle
//! completed, error ──user_message──▶ active.processing_intent (a new conversation)
//! completed, error ──reset──▶ idle ;  completed ──start──▶ active.awaiting_input
//! ```
//!
//! The compound state `active` holds the in-conversation states, so `fail`, `timeout` and
//! `reset` are declared once and bubble up from whichever child is active. `completed` and
//! `error` are not final: a chat user who writes again starts a new conversation. Entering
//! `idle` clears the intent and the fallback count; the last [`MAX_MESSAGES`] messages are
//! kept across conversations (they are what an AI agent is given as history).
//!
//! The transition history is kept small, since the whole instance is rewritten on every save:
//! at most [`HISTORY_LIMIT`] records, and a repeated self-transition (a message or reply in
//! `agent_active`) is counted on its record rather than appended
//! ([`fold_self_transitions`](crate::DefinitionBuilder::fold_self_transitions)). Snapshots
//! stored before (50 records, no counts) load as they are and shrink on their next transition.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::definition::{Definition, DefinitionBuilder, Edge};
use crate::instance::Instance;
use crate::types::Event;

/// The definition's name.
pub const NAME: &str = "conversation";
/// The definition's version.
pub const VERSION: u32 = 1;
/// Fallback attempts before a failure moves the conversation to `error`.
pub const MAX_FALLBACK_ATTEMPTS: u8 = 3;
/// Messages kept in [`ConvContext::last_messages`].
pub const MAX_MESSAGES: usize = 20;
/// History records kept per conversation. Repeated self-transitions (`agent_active →
/// agent_active` on every message and reply) are folded into one record per event, so these
/// cover many conversations' worth of real state changes.
pub const HISTORY_LIMIT: usize = 20;
/// Idle time after which `awaiting_input` and `agent_active` time out back to `idle`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Conversation states. `Active` is the compound parent of the in-conversation states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ConvState {
    Idle,
    Active,
    AwaitingInput,
    ProcessingIntent,
    AgentActive,
    AwaitingConfirmation,
    Fallback,
    Completed,
    Error,
}

/// Conversation events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ConvEvent {
    /// Open a conversation without a message (e.g. a greeting sent by us).
    Start,
    /// The user wrote; the text is kept in [`ConvContext::last_messages`].
    UserMessage {
        /// Message text.
        text: String,
    },
    /// Intent classification finished.
    IntentDetected {
        /// The intent (e.g. `"billing"`).
        intent: String,
        /// Ask the user to confirm before handing over to the agent.
        needs_confirmation: bool,
    },
    /// The agent answered; kept in [`ConvContext::last_messages`].
    AgentReply {
        /// Reply text.
        text: String,
        /// The agent considers the conversation finished.
        done: bool,
    },
    /// The user confirmed.
    Confirm,
    /// The user declined.
    Reject,
    /// Something failed (classification, the agent, a downstream): go to fallback, or to error
    /// after [`MAX_FALLBACK_ATTEMPTS`].
    Fail {
        /// What failed (kept in [`ConvContext::last_error`]).
        reason: String,
    },
    /// Idle too long (sent by the sweeper).
    Timeout,
    /// Back to idle.
    Reset,
}

/// [`ConvEvent`]'s kinds, on which transitions are declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ConvEventKind {
    Start,
    UserMessage,
    IntentDetected,
    AgentReply,
    Confirm,
    Reject,
    Fail,
    Timeout,
    Reset,
}

impl Event for ConvEvent {
    type Kind = ConvEventKind;

    fn kind(&self) -> ConvEventKind {
        match self {
            ConvEvent::Start => ConvEventKind::Start,
            ConvEvent::UserMessage { .. } => ConvEventKind::UserMessage,
            ConvEvent::IntentDetected { .. } => ConvEventKind::IntentDetected,
            ConvEvent::AgentReply { .. } => ConvEventKind::AgentReply,
            ConvEvent::Confirm => ConvEventKind::Confirm,
            ConvEvent::Reject => ConvEventKind::Reject,
            ConvEvent::Fail { .. } => ConvEventKind::Fail,
            ConvEvent::Timeout => ConvEventKind::Timeout,
            ConvEvent::Reset => ConvEventKind::Reset,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            ConvEvent::Start => "start",
            ConvEvent::UserMessage { .. } => "user_message",
            ConvEvent::IntentDetected { .. } => "intent_detected",
            ConvEvent::AgentReply { .. } => "agent_reply",
            ConvEvent::Confirm => "confirm",
            ConvEvent::Reject => "reject",
            ConvEvent::Fail { .. } => "fail",
            ConvEvent::Timeout => "timeout",
            ConvEvent::Reset => "reset",
        }
    }
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The user (the WhatsApp sender).
    User,
    /// The agent answering.
    Agent,
}

/// One message in [`ConvContext::last_messages`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub text: String,
}

/// The conversation's context.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvContext {
    /// Failures since the conversation started (0..=[`MAX_FALLBACK_ATTEMPTS`]).
    pub fallback_attempts: u8,
    /// The last [`MAX_MESSAGES`] messages, oldest first (user and agent).
    pub last_messages: VecDeque<ChatMessage>,
    /// The detected intent, if any.
    pub intent: Option<String>,
    /// The reason of the last failure.
    pub last_error: Option<String>,
}

impl ConvContext {
    /// Appends a message, dropping the oldest beyond [`MAX_MESSAGES`].
    pub fn push_message(&mut self, role: Role, text: impl Into<String>) {
        while self.last_messages.len() >= MAX_MESSAGES {
            self.last_messages.pop_front();
        }
        self.last_messages.push_back(ChatMessage {
            role,
            text: text.into(),
        });
    }
}

type Conv = Definition<ConvState, ConvEvent, ConvContext>;

fn record_user(c: &mut ConvContext, e: &ConvEvent) {
    if let ConvEvent::UserMessage { text } = e {
        c.push_message(Role::User, text.clone());
    }
}

fn record_agent(c: &mut ConvContext, e: &ConvEvent) {
    if let ConvEvent::AgentReply { text, .. } = e {
        c.push_message(Role::Agent, text.clone());
    }
}

/// The conversation definition's builder, for callers that add their own
/// [`on_transition`](DefinitionBuilder::on_transition) hook (or change settings) before
/// building. [`definition`] is this, built once.
pub fn builder() -> DefinitionBuilder<ConvState, ConvEvent, ConvContext> {
    use ConvEventKind as K;
    use ConvState::*;
    Conv::builder(NAME, VERSION)
        .history_limit(HISTORY_LIMIT)
        .fold_self_transitions(true)
        .state(Idle)
        .state(Active)
        .child(Active, AwaitingInput)
        .child(Active, ProcessingIntent)
        .child(Active, AgentActive)
        .child(Active, AwaitingConfirmation)
        .child(Active, Fallback)
        .state(Completed)
        .state(Error)
        .initial(Idle)
        .initial_child(Active, AwaitingInput)
        .on_entry(Idle, |c| {
            c.fallback_attempts = 0;
            c.intent = None;
            c.last_error = None;
        })
        .after(AwaitingInput, IDLE_TIMEOUT, ConvEvent::Timeout)
        .after(AgentActive, IDLE_TIMEOUT, ConvEvent::Timeout)
        .transition(Idle, K::Start, AwaitingInput)
        .edge(Edge::new(Idle, K::UserMessage, ProcessingIntent).action(record_user))
        .edge(Edge::new(AwaitingInput, K::UserMessage, ProcessingIntent).action(record_user))
        .edge(
            Edge::new(ProcessingIntent, K::IntentDetected, AwaitingConfirmation)
                .guard("needs_confirmation", |_, e| {
                    matches!(
                        e,
                        ConvEvent::IntentDetected {
                            needs_confirmation: true,
                            ..
                        }
                    )
                })
                .action(set_intent),
        )
        .edge(Edge::new(ProcessingIntent, K::IntentDetected, AgentActive).action(set_intent))
        .edge(Edge::new(ProcessingIntent, K::UserMessage, ProcessingIntent).action(record_user))
        .edge(Edge::new(AgentActive, K::UserMessage, AgentActive).action(record_user))
        .edge(
            Edge::new(AgentActive, K::AgentReply, Completed)
                .guard("done", |_, e| {
                    matches!(e, ConvEvent::AgentReply { done: true, .. })
                })
                .action(record_agent),
        )
        .edge(Edge::new(AgentActive, K::AgentReply, AgentActive).action(record_agent))
        .transition(AwaitingConfirmation, K::Confirm, AgentActive)
        .edge(
            Edge::new(AwaitingConfirmation, K::Reject, AwaitingInput)
                .action(|c: &mut ConvContext, _| c.intent = None),
        )
        .edge(Edge::new(AwaitingConfirmation, K::UserMessage, ProcessingIntent).action(record_user))
        .edge(Edge::new(Fallback, K::UserMessage, ProcessingIntent).action(record_user))
        .edge(
            Edge::new(Active, K::Fail, Fallback)
                .guard("attempts < 3", |c: &ConvContext, _| {
                    c.fallback_attempts < MAX_FALLBACK_ATTEMPTS
                })
                .action(|c: &mut ConvContext, e| {
                    c.fallback_attempts += 1;
                    set_error(c, e);
                }),
        )
        .edge(Edge::new(Active, K::Fail, Error).action(set_error))
        .transition(Active, K::Timeout, Idle)
        .transition(Active, K::Reset, Idle)
        .edge(Edge::new(Completed, K::UserMessage, ProcessingIntent).action(new_conversation))
        .transition(Completed, K::Start, AwaitingInput)
        .transition(Completed, K::Reset, Idle)
        .edge(Edge::new(Error, K::UserMessage, ProcessingIntent).action(new_conversation))
        .transition(Error, K::Reset, Idle)
}

fn set_intent(c: &mut ConvContext, e: &ConvEvent) {
    if let ConvEvent::IntentDetected { intent, .. } = e {
        c.intent = Some(intent.clone());
    }
}

fn set_error(c: &mut ConvContext, e: &ConvEvent) {
    if let ConvEvent::Fail { reason } = e {
        c.last_error = Some(reason.clone());
    }
}

fn new_conversation(c: &mut ConvContext, e: &ConvEvent) {
    c.fallback_attempts = 0;
    c.intent = None;
    c.last_error = None;
    record_user(c, e);
}

/// The conversation definition, built once per process and shared.
pub fn definition() -> Arc<Conv> {
    static DEFINITION: OnceLock<Arc<Conv>> = OnceLock::new();
    DEFINITION
        .get_or_init(|| {
            Arc::new(
                builder()
                    .build()
                    .expect("the conversation definition is valid"),
            )
        })
        .clone()
}

/// A new conversation in `idle`, created at `now`.
pub fn new_instance(now: DateTime<Utc>) -> Instance<ConvState, ConvContext> {
    definition().new_instance(ConvContext::default(), now)
}
