//! The `Service`: claim, run or replay, store.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower_service::Service;

use crate::claim::{Claim, Lease};
use crate::error::Error;
use crate::http::body::ResponseBody;
use crate::http::layer::Settings;
use crate::http::problem::{Problem, ProblemCode};
use crate::http::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
use crate::response::StoredResponse;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response future of [`IdempotencyService`].
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// The service produced by [`IdempotencyLayer`](crate::http::IdempotencyLayer).
#[derive(Clone)]
pub struct IdempotencyService<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> fmt::Debug for IdempotencyService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyService").finish_non_exhaustive()
    }
}

impl<S> IdempotencyService<S> {
    pub(crate) fn new(inner: S, settings: Arc<Settings>) -> Self {
        IdempotencyService { inner, settings }
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for IdempotencyService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Body + From<Bytes> + Send + 'static,
    ReqB::Data: Send,
    ReqB::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResponseBody<ResB>>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // Drive the clone that was polled ready, leave a fresh clone for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let settings = Arc::clone(&self.settings);
        Box::pin(handle(inner, settings, request))
    }
}

async fn handle<S, ReqB, ResB>(
    mut inner: S,
    settings: Arc<Settings>,
    request: Request<ReqB>,
) -> Result<Response<ResponseBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ReqB: Body + From<Bytes>,
    ReqB::Error: Into<BoxError>,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    if !settings.methods.contains(request.method()) {
        return pass(inner.call(request).await);
    }
    let idem = &settings.idempotency;
    let mut fields = request.headers().get_all(IDEMPOTENCY_KEY).iter();
    let (first, second) = (fields.next(), fields.next());
    if second.is_some() {
        // Which of two keys the client meant is a guess either way (the draft makes the
        // field a single Item): refuse rather than protect the request under one of them.
        return Ok(Problem::new(
            ProblemCode::InvalidKey,
            format!(
                "one Idempotency-Key header field is allowed, got {}",
                2 + fields.count()
            ),
        )
        .into_response());
    }
    let key = match first {
        None if settings.required => {
            return Ok(Problem::new(
                ProblemCode::MissingKey,
                format!(
                    "{} requests need an Idempotency-Key header",
                    request.method()
                ),
            )
            .into_response());
        }
        None => return pass(inner.call(request).await),
        Some(raw) => match idem.parse_header_key(raw.as_bytes()) {
            Ok(key) => key,
            Err(e) => {
                // Name the whole rule, not only the bound that was broken, so a client
                // fixes its key generator once.
                let rules = idem.config().key_rules();
                let why = match &e {
                    crate::Error::InvalidKey(key) => key.to_string(),
                    other => other.to_string(),
                };
                let detail = format!(
                    "Idempotency-Key must be {} to {} visible ASCII characters: {why}",
                    rules.min_len(),
                    rules.max_len()
                );
                return Ok(Problem::new(ProblemCode::InvalidKey, detail).into_response());
            }
        },
    };

    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, settings.max_request_bytes)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Ok(Problem::new(
                ProblemCode::BodyTooLarge,
                format!(
                    "request bodies are limited to {} bytes",
                    settings.max_request_bytes
                ),
            )
            .into_response());
        }
        Err(e) => {
            return Ok(Problem::new(ProblemCode::InvalidBody, e.to_string()).into_response());
        }
    };
    let fingerprint = (settings.fingerprint)(&parts, &body);
    let scope = settings
        .scope
        .as_ref()
        .and_then(|f| f(&parts))
        .unwrap_or_default();
    let request = Request::from_parts(parts, ReqB::from(body));

    let lease = match idem.claim(&scope, &key, fingerprint).await {
        Ok(Claim::Execute(lease)) => lease,
        Ok(Claim::Unprotected) => return pass(inner.call(request).await),
        Ok(Claim::Replay(stored)) => return Ok(replay(&stored)),
        Ok(Claim::InFlight { retry_after }) => {
            return Ok(Problem::new(
                ProblemCode::InFlight,
                "a request with this key is being processed; retry after it completes",
            )
            .retry_after(retry_after)
            .into_response());
        }
        Ok(Claim::Mismatch) => {
            return Ok(Problem::new(
                ProblemCode::KeyReused,
                "this key was used with a different request (method, path, query or body)",
            )
            .into_response());
        }
        Err(e) => {
            return Ok(Problem::new(ProblemCode::StoreUnavailable, e.to_string())
                .retry_after(Duration::from_secs(1))
                .into_response());
        }
    };

    // If this future is dropped from here on (client gone), or the handler panics, `lease`
    // is dropped unsettled and releases the key.
    let response = match inner.call(request).await {
        Ok(response) => response,
        Err(e) => {
            settle_release(lease).await;
            return Err(e);
        }
    };
    if !idem.config().should_store(response.status().as_u16()) {
        settle_release(lease).await;
        return pass(Ok(response));
    }
    let limit = idem.config().max_response_bytes();
    let (parts, body) = response.into_parts();
    let mut body = Box::pin(body);
    // Read at most `limit` bytes (plus the chunk that crosses it) before deciding: a
    // response that fits is stored before it is sent, so a retry that follows the answer
    // always replays it; a larger one is never held whole in memory.
    let mut head = VecDeque::new();
    let mut read = 0usize;
    // A declared length (Content-Length) over the limit needs no reading at all.
    let mut too_large = body.size_hint().lower() > limit as u64;
    while !too_large {
        // Turn the body error into a string at once: it need not be `Send`, and must not be
        // held across the release below.
        let frame = body.frame().await.map(|f| {
            f.map_err(|e| {
                let e: BoxError = e.into();
                e.to_string()
            })
        });
        match frame {
            None => break,
            // Trailers are not stored (they end the body anyway).
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read += data.len();
                    head.push_back(data);
                    too_large = read > limit;
                }
            }
            Some(Err(detail)) => {
                settle_release(lease).await;
                return Ok(Problem::new(ProblemCode::ResponseBody, detail).into_response());
            }
        }
    }
    if too_large {
        // The handler ran: a retry must not run it again (the draft's and Stripe's promise),
        // so the key is completed with a small "not replayable" answer instead of released.
        let stand_in = not_replayable(read, limit);
        if let Err(e) = lease.complete_too_large(&stand_in).await {
            tracing::warn!(key = %key, error = %e, "too-large response not recorded");
        }
        return Ok(Response::from_parts(
            parts,
            ResponseBody::resumed(head, body),
        ));
    }
    let body = concat(head, read);
    let stored = StoredResponse::new(
        parts.status.as_u16(),
        parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), Bytes::copy_from_slice(v.as_bytes()))),
        body.clone(),
    );
    match lease.complete(&stored).await {
        Ok(()) | Err(Error::ResponseTooLarge { .. }) => {}
        Err(e) => {
            // The handler ran; its answer still goes to this client even if it could not be
            // stored (a retry will then run again or see the newer holder's answer).
            tracing::warn!(key = %key, error = %e, "idempotent response not stored");
        }
    }
    Ok(Response::from_parts(parts, ResponseBody::full(body)))
}

/// The handler's response, its body streamed through untouched.
fn pass<B, E>(response: Result<Response<B>, E>) -> Result<Response<ResponseBody<B>>, E> {
    response.map(|r| r.map(ResponseBody::streamed))
}

fn concat(mut chunks: VecDeque<Bytes>, len: usize) -> Bytes {
    if chunks.len() <= 1 {
        return chunks.pop_front().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(len);
    for chunk in chunks {
        out.extend_from_slice(&chunk);
    }
    out.freeze()
}

/// What a retry of a request whose response was too large to store gets back.
fn not_replayable(read: usize, limit: usize) -> StoredResponse {
    let size = if read > limit {
        format!("more than {limit} bytes (at least {read})")
    } else {
        format!("declared larger than {limit} bytes")
    };
    let problem = Problem::new(
        ProblemCode::ResponseNotReplayable,
        format!(
            "the request with this key already ran; its response ({size}) was too large to \
             store, so it cannot be replayed and the request is not run again"
        ),
    );
    StoredResponse::new(
        problem.code().status().as_u16(),
        [(
            "content-type",
            Bytes::from_static(b"application/problem+json"),
        )],
        Bytes::from(problem.body().to_string()),
    )
}

async fn settle_release(lease: Lease) {
    let key = lease.key().clone();
    if let Err(e) = lease.release().await {
        tracing::warn!(key = %key, error = %e, "idempotency key release failed; it will expire");
    }
}

fn replay<B>(stored: &StoredResponse) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::full(stored.body().clone()));
    *response.status_mut() =
        StatusCode::from_u16(stored.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in stored.headers() {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(value.clone()),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => tracing::warn!(header = %name, "stored header is not valid HTTP; skipped"),
        }
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}
