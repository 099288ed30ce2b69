//! The OTLP exporter's HTTP client: the workspace's reqwest, driven on the service's tokio
//! runtime.
//!
//! The SDK's batch span processor exports from a thread of its own, outside any tokio
//! runtime, where reqwest's async client cannot run; the exporter's bundled clients are a
//! blocking reqwest of another major version (a second HTTP and TLS stack to build). So the
//! request is spawned on the runtime `init` was called from, and the processor's thread waits
//! on its join handle, which any executor can await.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// How long one export may take before it is given up (the batch is dropped, as the SDK does
/// on any export error): a collector that stops answering must not hold the export thread.
pub(crate) const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends OTLP requests with reqwest on a tokio runtime.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl RuntimeClient {
    /// A client whose requests run on `runtime`.
    pub(crate) fn new(runtime: tokio::runtime::Handle) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            // A collector does not redirect; one that does is misconfigured.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let res = client.execute(request).await?;
            let status = res.status();
            let headers = res.headers().clone();
            let body = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = task.await??;
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}
