//! Outgoing HTTP calls as OpenTelemetry client spans, with `traceparent` sent.

use tracing::Instrument;
use tracing::field::Empty;

/// Sends `request` in an `http.client` span (kind client; `http.request.method`,
/// `server.address`, `server.port`, `url.full` without its query, user info or fragment,
/// `http.response.status_code`, `error.type`), with the span's `traceparent` (and
/// `tracestate`) set on the request, so the callee continues the trace.
///
/// With OpenTelemetry off it is `request.send()`: no span, no header.
pub async fn send(request: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
    if !super::otel::enabled() {
        return request.send().await;
    }
    let (client, request) = request.build_split();
    let mut request = request?;
    let span = client_span(&request);
    super::propagation::inject(&span, request.headers_mut());
    let result = client.execute(request).instrument(span.clone()).await;
    match &result {
        Ok(res) => {
            let status = res.status();
            span.record("http.response.status_code", status.as_u16());
            // The conventions: a client span is an error from 400 on.
            if status.is_client_error() || status.is_server_error() {
                span.record("error.type", status.as_str());
                span.record("otel.status_code", "error");
            }
        }
        Err(e) => {
            span.record(
                "error.type",
                if e.is_timeout() {
                    "timeout"
                } else {
                    "transport"
                },
            );
            span.record("otel.status_code", "error");
        }
    }
    result
}

fn client_span(request: &reqwest::Request) -> tracing::Span {
    let url = request.url();
    tracing::info_span!(
        "http.client",
        otel.name = request.method().as_str(),
        otel.kind = "client",
        http.request.method = super::method_label(request.method()),
        server.address = url.host_str().unwrap_or(""),
        server.port = url.port_or_known_default().unwrap_or(0),
        url.full = %without_secrets(url),
        http.response.status_code = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// `url` without what may hold credentials: user info, query, fragment.
pub fn without_secrets(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secrets() {
        let url =
            reqwest::Url::parse("https://user:pw@api.example:8443/v1/x?token=s3cret#frag").unwrap();
        assert_eq!(without_secrets(&url), "https://api.example:8443/v1/x");
    }
}
