//! An HTTP GET health check (feature `http`).

use std::ops::RangeInclusive;

use async_trait::async_trait;

use super::{CheckError, HealthChecker};
use crate::Endpoint;

/// A [`HealthChecker`] that sends `GET <endpoint url><path>` and passes when the status is in
/// the expected range (default `200..=299`). The body is not read.
///
/// ```
/// use steadfast_service_registry::HttpChecker;
///
/// let checker = HttpChecker::new("/health").expect_status(200..=204);
/// # let _ = checker;
/// ```
#[derive(Debug, Clone)]
pub struct HttpChecker {
    client: reqwest::Client,
    path: String,
    expected: RangeInclusive<u16>,
}

impl HttpChecker {
    /// Checks `path` (e.g. `/health`) with a fresh client and the 2xx range.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            client: reqwest::Client::new(),
            path: path.into(),
            expected: 200..=299,
        }
    }

    /// Uses this client (shared connection pool, proxies, TLS settings).
    #[must_use]
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// The statuses that count as healthy.
    #[must_use]
    pub fn expect_status(mut self, range: RangeInclusive<u16>) -> Self {
        self.expected = range;
        self
    }
}

#[async_trait]
impl HealthChecker for HttpChecker {
    async fn check(&self, endpoint: &Endpoint) -> Result<(), CheckError> {
        let response = self
            .client
            .get(endpoint.join(&self.path))
            .send()
            .await
            // reqwest's message names the URL, credentials and all; the report shows this text.
            .map_err(|e| CheckError::Unreachable(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        if self.expected.contains(&status) {
            Ok(())
        } else {
            Err(CheckError::Status(status))
        }
    }
}
