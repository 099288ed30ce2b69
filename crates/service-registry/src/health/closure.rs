//! A health check from an async closure.

use std::fmt;

use async_trait::async_trait;

use super::{CheckError, HealthChecker};
use crate::Endpoint;

/// A [`HealthChecker`] that runs an async closure over the endpoint (a custom probe, a
/// database ping, or a test's switch).
///
/// ```
/// use steadfast_service_registry::{CheckError, FnChecker};
///
/// let checker = FnChecker::new(|endpoint| async move {
///     if endpoint.url().contains("down") { Err(CheckError::Failed("down".into())) } else { Ok(()) }
/// });
/// # let _ = checker;
/// ```
pub struct FnChecker<F> {
    f: F,
}

impl<F> FnChecker<F> {
    /// Wraps `f`.
    pub fn new<Fut>(f: F) -> Self
    where
        F: Fn(Endpoint) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), CheckError>> + Send + 'static,
    {
        Self { f }
    }
}

impl<F> fmt::Debug for FnChecker<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnChecker")
    }
}

#[async_trait]
impl<F, Fut> HealthChecker for FnChecker<F>
where
    F: Fn(Endpoint) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), CheckError>> + Send + 'static,
{
    async fn check(&self, endpoint: &Endpoint) -> Result<(), CheckError> {
        (self.f)(endpoint.clone()).await
    }
}
