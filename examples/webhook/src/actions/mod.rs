//! A downstream reply's `actions`, run as a saga (`steadfast-saga`) after the reply is
//! recorded.
//!
//! A reply (`{"reply": "...", "done": false}`) may carry `"actions": [{"type":
//! "create_order", "data": {...}}, ...]`. Each configured type (`[actions]`: one URL per
//! type) is one step of the saga `reply-actions` v1, in the fixed order of
//! [`ActionType::ALL`]; a step whose type the reply did not ask for is skipped
//! (`only_if`): no call, no permit from its breaker (so another type's outage never holds up
//! a reply that did not ask for it), nothing to undo. Running a step is a `POST` to its URL, undoing it a `DELETE`
//! ([`call`]); both carry the step's idempotency key `reply-actions/<wamid>:<type>`. When a
//! step fails for good, the steps already done are cancelled, last first; a cancellation that
//! fails for good parks the saga for an operator (`/admin/sagas`).
//!
//! The worker creates the saga (durably) after the downstream answered and before the reply
//! goes out ([`Actions::start`]): a store failure there is an ordinary retried attempt, and
//! once the user got the reply the actions are recorded. The steps run detached; the
//! recovery loop (started in [`crate::assemble`]) carries on the sagas of a process that
//! died. Each type runs through its own breaker, `action:<type>`.

pub mod call;
mod events;
mod kind;
pub mod reply;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use steadfast_circuit_breaker::Preset;
use steadfast_saga::{
    Error as SagaError, Operator, RunnerConfig, Saga, SagaId, SagaRunner, SagaStore, Start, Step,
    StepContext, StepError,
};

pub use events::{record_event, refresh_parked};
pub use kind::ActionType;

use call::{ActionEndpoint, ActionRequest};

/// The saga's name (also the namespace of its ids: `reply-actions/<wamid>`).
pub const SAGA_NAME: &str = "reply-actions";
/// The saga definition's version.
pub const SAGA_VERSION: u32 = 1;

/// The saga's input: what every step needs, recorded with the saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionsInput {
    /// The `wamid` whose reply asked for the actions.
    pub message_id: String,
    /// The user's WhatsApp id.
    pub from: String,
    /// The correlation id of the delivery (sent as `X-Request-Id`).
    pub correlation_id: String,
    /// The downstream service that replied.
    pub service: String,
    /// The actions to run, by type, with their `data`.
    pub actions: BTreeMap<ActionType, Value>,
}

/// Why the saga of a message could not be created: the attempt fails and is retried (nothing
/// was sent to the user yet).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The saga store failed or did not answer in time.
    #[error("saga store: {0}")]
    Store(String),
}

impl StartError {
    /// The error class recorded with the attempt.
    pub fn kind(&self) -> &'static str {
        match self {
            StartError::Store(_) => "saga_store",
        }
    }
}

/// The actions side of the worker: the runner (when any action type is configured) and the
/// operator view of the saga store.
#[derive(Debug, Clone)]
pub struct Actions {
    runner: Option<SagaRunner<ActionsInput>>,
    operator: Operator,
    store: Arc<dyn SagaStore>,
    config: crate::config::ActionsConfig,
    store_timeout: std::time::Duration,
}

impl Actions {
    /// The actions of `config` on `store`. Each configured type gets its breaker
    /// `action:<type>` from `breakers` (so it is listed with the worker's other breakers) and
    /// is called with `http`. No type configured: no runner, every action is ignored.
    pub fn new(
        config: &crate::config::Config,
        store: Arc<dyn SagaStore>,
        http: &reqwest::Client,
        breakers: &steadfast_circuit_breaker::Registry,
    ) -> Result<Self, String> {
        let actions = &config.actions;
        let runner = if actions.endpoints.is_empty() {
            None
        } else {
            let saga = definition(config, http, breakers)?;
            let runner_config = RunnerConfig::builder()
                .poll_interval(actions.recovery_poll)
                .on_event(record_event)
                .build()
                .map_err(|e| e.to_string())?;
            Some(SagaRunner::new(saga, store.clone(), runner_config))
        };
        Ok(Self {
            runner,
            operator: Operator::new(store.clone()),
            store,
            config: actions.clone(),
            store_timeout: config.storage.store_timeout,
        })
    }

    /// No action type configured, on an in-memory store (tests that build the worker by hand).
    pub fn disabled(config: &crate::config::Config) -> Self {
        let store: Arc<dyn SagaStore> = Arc::new(steadfast_saga::MemorySagaStore::new());
        Self {
            runner: None,
            operator: Operator::new(store.clone()),
            store,
            config: crate::config::ActionsConfig {
                endpoints: Vec::new(),
                ..config.actions.clone()
            },
            store_timeout: config.storage.store_timeout,
        }
    }

    /// The runner, when any action type is configured (its recovery loop runs in
    /// [`crate::assemble`]).
    pub fn runner(&self) -> Option<&SagaRunner<ActionsInput>> {
        self.runner.as_ref()
    }

    /// The operator view of the saga store (`/admin/sagas`).
    pub fn operator(&self) -> &Operator {
        &self.operator
    }

    /// The saga store.
    pub fn store(&self) -> &Arc<dyn SagaStore> {
        &self.store
    }

    /// The configured types, in step order.
    pub fn configured(&self) -> Vec<ActionType> {
        self.config.endpoints.iter().map(|(k, _)| *k).collect()
    }

    /// Creates the saga of `message_id`'s reply when it asks for any configured action, and
    /// starts it on its own task. Returns once the saga is durable (or there is nothing to
    /// run, or it already exists: a redelivered or retried message starts nothing new).
    /// Ignored actions are logged (type only) and counted here.
    pub async fn start(
        &self,
        message_id: &str,
        from: &str,
        correlation_id: &str,
        service: &str,
        actions: &Value,
    ) -> Result<(), StartError> {
        let (run, ignored) = reply::select(actions, |k| self.config.is_configured(k));
        for (reason, kind) in &ignored {
            metrics::counter!(crate::metrics::ACTIONS_IGNORED, "reason" => reason.as_str())
                .increment(1);
            tracing::warn!(
                reason = reason.as_str(),
                action_type = %kind,
                "reply action ignored"
            );
        }
        let Some(runner) = &self.runner else {
            return Ok(());
        };
        if run.is_empty() {
            return Ok(());
        }
        let id = match SagaId::derive(SAGA_NAME, message_id) {
            Ok(id) => id,
            Err(e) => {
                // Retrying cannot fix the id; the reply still goes out.
                metrics::counter!(crate::metrics::ACTIONS_IGNORED, "reason" => "bad_message_id")
                    .increment(run.len() as u64);
                tracing::error!(error = %e, "reply actions not run: the message id makes no saga id");
                return Ok(());
            }
        };
        let types: Vec<&str> = run.keys().map(|k| k.as_str()).collect();
        let input = ActionsInput {
            message_id: message_id.to_owned(),
            from: from.to_owned(),
            correlation_id: correlation_id.to_owned(),
            service: service.to_owned(),
            actions: run,
        };
        let started = tokio::time::timeout(self.store_timeout, runner.start(id.clone(), input))
            .await
            .map_err(|_| StartError::Store(format!("no answer within {:?}", self.store_timeout)))?;
        match started {
            Ok(Start::Started(_)) => {
                tracing::info!(saga = %id, actions = ?types, "reply actions saga started");
                Ok(())
            }
            Ok(Start::AlreadyExists(summary)) => {
                tracing::info!(saga = %id, state = %summary.state, "reply actions saga already exists; nothing started");
                Ok(())
            }
            Err(e @ (SagaError::IdTaken { .. } | SagaError::InvalidInput(_))) => {
                tracing::error!(saga = %id, error = %e, "reply actions not run");
                Ok(())
            }
            Err(e) => Err(StartError::Store(e.to_string())),
        }
    }
}

/// The saga definition: one step per configured type, in [`ActionType::ALL`]'s order.
fn definition(
    config: &crate::config::Config,
    http: &reqwest::Client,
    breakers: &steadfast_circuit_breaker::Registry,
) -> Result<Saga<ActionsInput>, String> {
    let actions = &config.actions;
    let policy = actions.step_policy().map_err(|e| e.to_string())?;
    let breaker_config = actions.breaker.breaker_config()?;
    let mut saga = Saga::builder(SAGA_NAME).version(SAGA_VERSION);
    for (kind, url) in &actions.endpoints {
        let kind = *kind;
        let endpoint = Arc::new(ActionEndpoint::new(
            kind,
            url.clone(),
            http.clone(),
            actions.timeout,
            config.worker.max_response_bytes,
        ));
        let undo = endpoint.clone();
        let breaker =
            breakers.get_or_create(&kind.breaker_name(), Preset::Custom(breaker_config.clone()));
        let step = Step::new(kind.as_str(), move |ctx: StepContext<ActionsInput>| {
            let endpoint = endpoint.clone();
            async move {
                let input = ctx.input();
                // `only_if` below runs this step only when the reply asked for it.
                let Some(data) = input.actions.get(&kind) else {
                    return Err(StepError::permanent(
                        "the reply did not ask for this action",
                    ));
                };
                let body = ActionRequest {
                    message_id: &input.message_id,
                    from: &input.from,
                    service: &input.service,
                    kind,
                    data,
                };
                endpoint
                    .execute(ctx.idempotency_key(), &input.correlation_id, &body)
                    .await
            }
        })
        .compensate(move |ctx: StepContext<ActionsInput>, _output: Value| {
            let undo = undo.clone();
            // The key says what to cancel; the recorded output is for operators.
            async move {
                undo.compensate(ctx.idempotency_key(), &ctx.input().correlation_id)
                    .await
            }
        })
        .only_if(move |input: &ActionsInput| input.actions.contains_key(&kind))
        .policy(policy.clone())
        .breaker(breaker);
        saga = saga.step(step);
    }
    saga.build().map_err(|e| e.to_string())
}
