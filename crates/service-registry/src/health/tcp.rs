//! A TCP connect health check.

use async_trait::async_trait;
use tokio::net::TcpStream;

use super::{CheckError, HealthChecker};
use crate::Endpoint;

/// A [`HealthChecker`] that passes when a TCP connection to the endpoint's `host:port`
/// ([`Endpoint::address`]) opens; the connection is closed right away.
///
/// It proves the process listens, not that it serves: prefer an HTTP check where there is one.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpChecker;

#[async_trait]
impl HealthChecker for TcpChecker {
    async fn check(&self, endpoint: &Endpoint) -> Result<(), CheckError> {
        let address = endpoint.address().ok_or_else(|| {
            CheckError::Unreachable(format!("no host:port in {:?}", endpoint.redacted()))
        })?;
        TcpStream::connect(address)
            .await
            .map(drop)
            .map_err(|e| CheckError::Unreachable(e.to_string()))
    }
}
