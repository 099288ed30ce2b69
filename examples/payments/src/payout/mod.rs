//! Payouts as sagas: definition `payout`, version 1.
//!
//! ```text
//! POST /v1/payouts ── ledger: payout row + reservation (one transaction) ── saga created ── 202
//!
//! reserve ──▶ request ──▶ await_result ──▶ settle (pivot)
//!   │ compensation: release        │ FAILED / refused: permanent ─▶ compensate: release
//! ```
//!
//! - **reserve** checks the payout still holds its reservation; its compensation releases it
//!   (idempotent: only a pending payout moves money). The reservation itself is made by the
//!   request handler in the same transaction as the payout row, so `available` drops before
//!   the 202 is sent; a payout whose saga was never created (a crash between the two) is found
//!   by [`PayoutService::adopt_pending`] at start-up, which starts its saga (idempotent on the
//!   payout id).
//! - **request** posts the disbursement with `X-Reference-Id` = payout id. 5xx, 429, timeouts:
//!   retried with backoff (the provider's `Retry-After` honoured, capped by the policy's
//!   `max_delay`), behind a breaker whose open state is a wait, not a failure. Any other 4xx:
//!   permanent, so the saga compensates and the money is released.
//! - **await_result** is "still pending" (retryable) until the callback worker has recorded the
//!   provider's SUCCESSFUL or FAILED on the payout; FAILED is permanent (→ release). Its policy
//!   has a 24 h horizon: a provider that never calls back fails the payout after that.
//! - **settle** is the pivot: balance and reservation drop together; after it the saga only goes
//!   forward.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use steadfast_circuit_breaker::CircuitBreaker;
use steadfast_retry::{Jitter, RetryPolicy};
use steadfast_saga::{Saga, SagaId, SagaRunner, Start, Step, StepContext, StepError};

use crate::ledger::{Ledger, LedgerError, PayoutStatus, ProviderResult};

pub mod provider;

pub use provider::{DisbursementRequest, ProviderClient};

/// The saga definition's name.
pub const SAGA_NAME: &str = "payout";
/// The saga definition's version.
pub const SAGA_VERSION: u32 = 1;

/// A payout saga's input: the payout id (everything else is read from the ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutInput {
    /// The payout.
    pub payout_id: String,
}

/// Retry and breaker settings of the payout saga; [`Default`] is production's.
#[derive(Debug, Clone)]
pub struct PayoutTuning {
    /// The `request` step: exponential from 500 ms, waits capped at 30 s, 1 h horizon.
    pub request_policy: RetryPolicy,
    /// The `await_result` step: exponential from 250 ms, waits capped at 5 s, 24 h horizon.
    pub await_policy: RetryPolicy,
    /// The provider breaker: opens at 50 % failures over the last 10 calls (5 at least),
    /// stays open 10 s.
    pub breaker: steadfast_circuit_breaker::Config,
    /// The longest provider `Retry-After` honoured.
    pub max_retry_after: Duration,
}

fn policy(initial: Duration, max_delay: Duration, horizon: Duration) -> RetryPolicy {
    RetryPolicy::builder()
        .exponential(initial, 2.0)
        .max_delay(max_delay)
        .jitter(Jitter::Equal)
        .max_attempts(u32::MAX)
        .max_elapsed(horizon)
        .build()
        .unwrap_or_default()
}

impl Default for PayoutTuning {
    fn default() -> Self {
        PayoutTuning {
            request_policy: policy(
                Duration::from_millis(500),
                Duration::from_secs(30),
                Duration::from_secs(3600),
            ),
            await_policy: policy(
                Duration::from_millis(250),
                Duration::from_secs(5),
                Duration::from_secs(24 * 3600),
            ),
            breaker: steadfast_circuit_breaker::Config::builder()
                .failure_rate_threshold(50.0)
                .count_window(10)
                .minimum_calls(5)
                .open_duration(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

fn store_error(e: LedgerError) -> StepError {
    match e {
        LedgerError::Store(m) => StepError::retryable(m),
        other => StepError::permanent(other.to_string()),
    }
}

/// Builds the `payout` saga definition.
pub fn definition(
    ledger: Arc<dyn Ledger>,
    provider: ProviderClient,
    breaker: CircuitBreaker,
    tuning: &PayoutTuning,
) -> Result<Saga<PayoutInput>, steadfast_saga::Error> {
    let (l1, l2, l3, l4, l5) = (
        ledger.clone(),
        ledger.clone(),
        ledger.clone(),
        ledger.clone(),
        ledger,
    );
    let provider = Arc::new(provider);
    Saga::builder(SAGA_NAME)
        .version(SAGA_VERSION)
        .step(
            Step::new("reserve", move |ctx: StepContext<PayoutInput>| {
                let ledger = l1.clone();
                async move {
                    let id = &ctx.input().payout_id;
                    match ledger.payout(id).await.map_err(store_error)? {
                        None => Err(StepError::permanent(format!("payout {id} does not exist"))),
                        Some(p) if p.status == PayoutStatus::Failed => {
                            Err(StepError::permanent("the reservation was already released"))
                        }
                        Some(_) => Ok(()),
                    }
                }
            })
            .compensate(move |ctx: StepContext<PayoutInput>, (): ()| {
                let ledger = l2.clone();
                async move {
                    let p = ledger
                        .release_payout(&ctx.input().payout_id)
                        .await
                        .map_err(store_error)?;
                    metrics::counter!(crate::metrics::PAYOUTS, "status" => p.status.as_str())
                        .increment(1);
                    tracing::info!(payout = %p.id, status = p.status.as_str(), "payout released");
                    Ok(())
                }
            }),
        )
        .step(
            Step::new("request", move |ctx: StepContext<PayoutInput>| {
                let (ledger, provider) = (l3.clone(), provider.clone());
                async move {
                    let id = &ctx.input().payout_id;
                    let payout = ledger
                        .payout(id)
                        .await
                        .map_err(store_error)?
                        .ok_or_else(|| StepError::permanent(format!("payout {id} vanished")))?;
                    provider.disburse(&payout).await
                }
            })
            .policy(tuning.request_policy.clone())
            .breaker(breaker),
        )
        .step(
            Step::new("await_result", move |ctx: StepContext<PayoutInput>| {
                let ledger = l4.clone();
                async move {
                    let id = &ctx.input().payout_id;
                    let payout = ledger
                        .payout(id)
                        .await
                        .map_err(store_error)?
                        .ok_or_else(|| StepError::permanent(format!("payout {id} vanished")))?;
                    match payout.provider_result {
                        None => Err(StepError::retryable("provider result still pending")),
                        Some(ProviderResult::Failed) => {
                            Err(StepError::permanent("provider reported FAILED"))
                        }
                        Some(ProviderResult::Successful) => Ok(()),
                    }
                }
            })
            .policy(tuning.await_policy.clone()),
        )
        .step(
            Step::new("settle", move |ctx: StepContext<PayoutInput>| {
                let ledger = l5.clone();
                async move {
                    let p = ledger
                        .settle_payout(&ctx.input().payout_id)
                        .await
                        .map_err(store_error)?;
                    if p.status != PayoutStatus::Succeeded {
                        return Err(StepError::permanent(format!(
                            "payout is {}, cannot settle",
                            p.status.as_str()
                        )));
                    }
                    metrics::counter!(crate::metrics::PAYOUTS, "status" => "succeeded")
                        .increment(1);
                    tracing::info!(payout = %p.id, "payout settled");
                    Ok(())
                }
            })
            .pivot(),
        )
        .build()
}

/// Starts payout sagas and adopts orphaned payouts.
#[derive(Debug, Clone)]
pub struct PayoutService {
    runner: SagaRunner<PayoutInput>,
    ledger: Arc<dyn Ledger>,
}

impl PayoutService {
    /// A service over `runner` and `ledger`.
    pub fn new(runner: SagaRunner<PayoutInput>, ledger: Arc<dyn Ledger>) -> Self {
        PayoutService { runner, ledger }
    }

    /// The runner.
    pub fn runner(&self) -> &SagaRunner<PayoutInput> {
        &self.runner
    }

    /// Creates the saga of payout `id` (durably) and drives it on a spawned task. Idempotent:
    /// an existing saga is left alone.
    pub async fn start(&self, id: &str) -> Result<(), steadfast_saga::Error> {
        let saga_id = SagaId::new(id)?;
        match self
            .runner
            .start(
                saga_id,
                PayoutInput {
                    payout_id: id.to_owned(),
                },
            )
            .await?
        {
            Start::Started(_) | Start::AlreadyExists(_) => Ok(()),
        }
    }

    /// Starts a saga for every pending payout that has none (a process that died between
    /// reserving and creating the saga); returns how many were looked at.
    pub async fn adopt_pending(&self) -> Result<usize, String> {
        let pending = self
            .ledger
            .pending_payouts(10_000)
            .await
            .map_err(|e| e.to_string())?;
        for id in &pending {
            self.start(id).await.map_err(|e| e.to_string())?;
        }
        Ok(pending.len())
    }
}

impl std::fmt::Debug for dyn Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ledger")
    }
}
