//! The claim / lease / replay model, and fencing.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, StoreDown};
use crate::error::Error;
use crate::fingerprint::Fingerprint;
use crate::key::IdempotencyKey;
use crate::response::StoredResponse;
use crate::stats::{Counters, Outcome, Stats};
use crate::store::{ClaimRequest, IdempotencyStore, StoreClaim};
use crate::timestamp::{self, Timestamp};
use steadfast_retry::{SystemClock, WallClock};

/// The answer to [`Idempotency::claim`].
#[derive(Debug)]
#[must_use = "an Execute lease must be completed or released"]
pub enum Claim {
    /// Run the operation, then [`Lease::complete`] or [`Lease::release`]. First use of the
    /// key, or the previous holder's lease expired.
    Execute(Lease),
    /// Completed before with the same request: answer with this response.
    Replay(StoredResponse),
    /// Another holder is running the operation now (HTTP 409 with `Retry-After`).
    InFlight {
        /// Time until the other holder's lease expires.
        retry_after: Duration,
    },
    /// The key was used with a different request (HTTP 422).
    Mismatch,
    /// The store is down and the policy is [`StoreDown::FailOpen`]: run the operation
    /// without protection. Counted in [`Stats::fail_open`].
    Unprotected,
}

/// Claims idempotency keys on a store, with policies. Cheap to clone (shares the store and
/// counters).
#[derive(Clone)]
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    config: Arc<Config>,
    clock: Arc<dyn WallClock>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Idempotency {
    /// Claims on `store` with `config`, on the system clock.
    pub fn new(store: Arc<dyn IdempotencyStore>, config: Config) -> Self {
        Idempotency {
            store,
            config: Arc::new(config),
            clock: Arc::new(SystemClock),
            counters: Arc::new(Counters::new("claims")),
        }
    }

    /// Use another clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.clock = clock;
        self
    }

    /// The policies.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Outcome counters since creation.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    pub(crate) fn count(&self, outcome: Outcome) {
        self.counters.bump(outcome);
    }

    /// Validate a raw key with the configured [`KeyRules`](crate::KeyRules).
    pub fn parse_key(&self, raw: &str) -> Result<IdempotencyKey, Error> {
        Ok(self.config.key_rules.parse(raw)?)
    }

    /// Validate an `Idempotency-Key` header value with the configured
    /// [`KeyRules`](crate::KeyRules): a Structured Field string (`"key"`) is unquoted first
    /// ([`KeyRules::parse_header`](crate::KeyRules::parse_header)).
    pub fn parse_header_key(&self, raw: &[u8]) -> Result<IdempotencyKey, Error> {
        Ok(self.config.key_rules.parse_header(raw)?)
    }

    /// Claim `key` in `scope` for a request with `fingerprint`, at the clock's now.
    ///
    /// A store error gives `Err(Error::StoreUnavailable)` under [`StoreDown::FailClosed`]
    /// and `Ok(Claim::Unprotected)` under [`StoreDown::FailOpen`].
    pub async fn claim(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
    ) -> Result<Claim, Error> {
        self.claim_at(scope, key, fingerprint, timestamp::now(&*self.clock))
            .await
    }

    /// [`Idempotency::claim`] at an explicit time.
    pub async fn claim_at(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        now: Timestamp,
    ) -> Result<Claim, Error> {
        let request = ClaimRequest {
            scope,
            key,
            fingerprint,
            now,
            lease: self.config.lease_duration,
        };
        let answer = match self.store.claim(request).await {
            Ok(answer) => answer,
            Err(e) => {
                self.count(Outcome::StoreError);
                tracing::warn!(key = %key, error = %e, "idempotency store error on claim");
                return match self.config.store_down {
                    StoreDown::FailClosed => Err(e),
                    StoreDown::FailOpen => {
                        self.count(Outcome::FailOpen);
                        Ok(Claim::Unprotected)
                    }
                };
            }
        };
        Ok(match answer {
            StoreClaim::Execute { fence } => {
                self.count(Outcome::Executed);
                Claim::Execute(Lease {
                    owner: self.clone(),
                    scope: scope.to_owned(),
                    key: key.clone(),
                    fence,
                    expires_at: now.plus(self.config.lease_duration),
                    settled: false,
                })
            }
            StoreClaim::Replay(response) => {
                self.count(Outcome::Replayed);
                Claim::Replay(response)
            }
            StoreClaim::InFlight { retry_after } => {
                self.count(Outcome::InFlight);
                Claim::InFlight { retry_after }
            }
            StoreClaim::Mismatch => {
                self.count(Outcome::Mismatch);
                tracing::info!(key = %key, "idempotency key reused with a different request");
                Claim::Mismatch
            }
        })
    }
}

/// The right to run the operation for a key, until it expires.
///
/// Settle it with [`Lease::complete`] or [`Lease::release`]. A lease dropped unsettled (the
/// handler panicked, or its future was cancelled because the client went away) releases the
/// key in a background task, so that the client's retry is not blocked until expiry.
pub struct Lease {
    owner: Idempotency,
    scope: String,
    key: IdempotencyKey,
    fence: u64,
    expires_at: Timestamp,
    settled: bool,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("fence", &self.fence)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The fencing token.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// When the lease expires (by the claiming clock).
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// The key held.
    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// Store `response` for replay during the completed TTL.
    ///
    /// Fails with [`Error::StaleLease`] when the lease was lost (expired and re-claimed):
    /// nothing is overwritten. A body over the configured limit is not stored: the key is
    /// released and [`Error::ResponseTooLarge`] returned (counted in `Stats::too_large`).
    pub async fn complete(mut self, response: &StoredResponse) -> Result<(), Error> {
        self.settled = true;
        let owner = &self.owner;
        let limit = owner.config.max_response_bytes;
        if response.body().len() > limit {
            owner.count(Outcome::TooLarge);
            owner
                .store
                .release(&self.scope, &self.key, self.fence)
                .await?;
            return Err(Error::ResponseTooLarge {
                size: response.body().len(),
                limit,
            });
        }
        let result = owner
            .store
            .complete(
                &self.scope,
                &self.key,
                self.fence,
                response,
                owner.config.completed_ttl,
                timestamp::now(&*owner.clock),
            )
            .await;
        if let Err(Error::StaleLease { fence }) = &result {
            tracing::warn!(key = %self.key, fence, "lease lost before completion; result not stored");
        }
        result
    }

    /// Record `stand_in` (a small "not replayable" answer) for a response whose body was over
    /// the limit, counted in `Stats::too_large`: the operation ran, so a retry gets the
    /// stand-in instead of running it again.
    #[cfg(feature = "tower")]
    pub(crate) async fn complete_too_large(
        mut self,
        stand_in: &StoredResponse,
    ) -> Result<(), Error> {
        self.settled = true;
        let owner = &self.owner;
        owner.count(Outcome::TooLarge);
        owner
            .store
            .complete(
                &self.scope,
                &self.key,
                self.fence,
                stand_in,
                owner.config.completed_ttl,
                timestamp::now(&*owner.clock),
            )
            .await
    }

    /// Free the key so that a retry runs the operation again (e.g. after a 5xx).
    pub async fn release(mut self) -> Result<(), Error> {
        self.settled = true;
        self.owner
            .store
            .release(&self.scope, &self.key, self.fence)
            .await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Cancelled or panicked: free the key without blocking the dropping thread.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return; // No runtime: the lease expires on its own.
        };
        let store = Arc::clone(&self.owner.store);
        let scope = std::mem::take(&mut self.scope);
        let key = self.key.clone();
        let fence = self.fence;
        handle.spawn(async move {
            if let Err(e) = store.release(&scope, &key, fence).await {
                tracing::debug!(key = %key, error = %e, "release of an abandoned lease failed; it will expire");
            }
        });
    }
}
