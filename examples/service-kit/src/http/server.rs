//! The HTTP server: the axum router on hyper's HTTP/1.1 connections, with the limits an open
//! port needs.
//!
//! `axum::serve` runs hyper with no timer and hyper's defaults, which an anonymous client can
//! exhaust: a head trickled one byte a second holds its connection for minutes, idle kept-alive
//! sockets stay forever, each connection may buffer about 400 KiB of unfinished head, and
//! connections are unbounded. Here, on each listener:
//!
//! - At most [`Limits::max_connections`] connections are served at once. A permit is taken
//!   *before* `accept`, so beyond the cap new connections wait in the kernel's listen backlog
//!   (and are refused by the kernel when that is full); nothing grows without bound in the
//!   process. Each listener has its own cap, so a flood of the public port cannot lock
//!   operators out of the ops listener.
//! - A request head must arrive complete within [`Limits::header_read_timeout`] of its first
//!   byte (of the accept, for a connection's first request), or the connection is closed.
//! - A kept-alive connection with no request in flight and no byte received for
//!   [`Limits::keep_alive_timeout`] is closed gracefully (hyper flushes what it still has to
//!   write, for at most [`CLOSE_GRACE`]).
//! - A head over [`MAX_HEAD_BYTES`] is answered 431 by hyper and the connection closed, as soon
//!   as that many bytes are buffered: a little above the service's own 16 KiB header check
//!   ([`MAX_HEADER_BYTES`]), so heads just over it still get the problem+json 431.
//! - The peer address reaches handlers as `ConnectInfo<SocketAddr>` (the rate limiter's key).
//! - Shutdown: stop accepting (the listener is closed), let each connection finish its
//!   in-flight request and close, and wait for them; the caller bounds the wait.
//!
//! Both timeouts are kept here rather than by hyper: hyper 1.x's `header_read_timeout` also
//! starts the moment a kept-alive connection goes idle, so it cannot tell "idle between
//! requests" from "slow head", and hyper has no idle timeout of its own. Each connection
//! therefore tracks its requests in flight and when it last went idle or started a head
//! (`Activity`), and a watchdog beside the connection closes it at the deadline that applies.
//! hyper's own header timer is still set, at the sum of both timeouts, as a backstop that never
//! fires first.
//!
//! HTTP/1.1 only. Meta delivers webhooks over HTTP/1.1, and the proxies that terminate TLS in
//! front of a service like this one speak HTTP/1.1 to it; HTTP/2 over cleartext (prior
//! knowledge) would add a second protocol with its own flood limits (streams, resets,
//! `CONTINUATION` frames, pings) to harden for no client that needs it. `axum::serve` as built
//! here (without axum's `http2` feature) spoke HTTP/1.1 only as well.
//!
//! Not covered: a client that stops reading a response while its body is still being
//! produced holds the connection until the body ends; every body this service answers is
//! produced whole (JSON, Prometheus text), so hyper buffers it and the idle timeout applies.
//!

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::MAX_HEADER_BYTES;

/// The largest request head (request line and headers) hyper buffers: 431 and close beyond
/// it. The service's own check counts header names and values only ([`MAX_HEADER_BYTES`]);
/// the 8 KiB above it leave room for the request line and the `": "` and CRLF of each header.
pub const MAX_HEAD_BYTES: usize = MAX_HEADER_BYTES + 8 * 1024;

/// How long a connection closed for idleness may take to flush what hyper still has to write
/// before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Pause after an accept error that is not the peer's (out of file descriptors, say), so that
/// the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// A request head not complete this long after its first byte closes the connection.
    pub header_read_timeout: Duration,
    /// A connection idle (no request in flight, no byte received) this long is closed.
    pub keep_alive_timeout: Duration,
}

impl Limits {
    fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout + self.keep_alive_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_header_size(MAX_HEAD_BYTES);
        b
    }
}

/// Serves `router` on `listener` until `stop` turns true (or its sender is dropped), then
/// closes the listener, lets every connection finish its in-flight request, and returns once
/// all are closed. Dropping the returned future drops every connection at once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let http1 = Arc::new(limits.http1());
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            () = stopped(&mut stop) => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let (tcp, peer) = tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_peer_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            tcp,
            peer,
            router.clone(),
            limits,
            http1.clone(),
            stop.clone(),
            permit,
        ));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Resolves once `stop` is true or its sender is gone (the guard of `wait_for` is not `Send`,
/// so it must not live in the caller's future).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// An accept error caused by one peer (gone before it was accepted), not by the server.
fn is_peer_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// Why the server closed a connection on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// A request head did not arrive complete in time.
    HeadTimeout,
    /// No request in flight and nothing received for the keep-alive timeout.
    Idle,
}

impl Expiry {
    fn label(self) -> &'static str {
        match self {
            Self::HeadTimeout => "header_timeout",
            Self::Idle => "idle",
        }
    }
}

/// Serves one connection, holding `_permit` (one of the listener's connection slots) until
/// it closes.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    http1: Arc<hyper::server::conn::http1::Builder>,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new(Instant::now()));
    let io = TokioIo::new(Watched {
        io: tcp,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_flight = activity.begin();
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            let call = router.clone().oneshot(request);
            async move {
                let response = call.await?;
                Ok::<_, Infallible>(response.map(|body| InFlightBody {
                    body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let conn = http1.serve_connection(io, service);
    tokio::pin!(conn);
    let expiry = activity.expired(limits);
    tokio::pin!(expiry);
    let mut stopping = false;
    let mut closing_until: Option<Instant> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = stopped(&mut stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            why = &mut expiry, if closing_until.is_none() => {
                metrics::counter!(crate::metrics::CONNECTIONS_CLOSED, "reason" => why.label())
                    .increment(1);
                match why {
                    // An unfinished head has nothing to flush: drop the socket now.
                    Expiry::HeadTimeout => return,
                    Expiry::Idle => {
                        conn.as_mut().graceful_shutdown();
                        closing_until = Some(Instant::now() + CLOSE_GRACE);
                    }
                }
            }
            () = sleep_until_some(closing_until) => return,
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing, for its deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the rest of a request head (since its first byte, or the accept).
    Head,
    /// A request is in flight: its handler runs or its response is still being produced.
    /// The request timeout (408) bounds that, not this module.
    Busy,
    /// Kept alive between requests, nothing received since the last response.
    Idle,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    in_flight: usize,
    since: Instant,
}

/// A connection's requests in flight and the moment its current phase began, shared by the
/// socket wrapper (bytes received), the service (requests begun) and the response bodies
/// (requests ended); the watchdog sleeps until the deadline of the current phase.
#[derive(Debug)]
struct Activity {
    state: Mutex<State>,
    /// Woken when a deadline may have moved earlier: the last request ended, or a head began.
    /// `notify_one` keeps a permit for the single waiter, so no change is missed.
    changed: Notify,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Self {
            state: Mutex::new(State {
                phase: Phase::Head,
                in_flight: 0,
                since: accepted,
            }),
            changed: Notify::new(),
        }
    }

    /// Bytes arrived: on an idle connection they start a head.
    fn received(&self) {
        let mut s = self.state.lock();
        if s.phase == Phase::Idle {
            s.phase = Phase::Head;
            s.since = Instant::now();
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A request head was parsed; the returned guard ends the request when dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.state.lock();
        s.in_flight += 1;
        s.phase = Phase::Busy;
        InFlight(self.clone())
    }

    fn end(&self) {
        let mut s = self.state.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.phase = Phase::Idle;
            s.since = Instant::now();
            drop(s);
            self.changed.notify_one();
        }
    }

    /// The current deadline and what passing it means; `None` while a request is in flight.
    fn deadline(&self, limits: Limits) -> Option<(Instant, Expiry)> {
        let s = self.state.lock();
        match s.phase {
            Phase::Busy => None,
            Phase::Head => Some((s.since + limits.header_read_timeout, Expiry::HeadTimeout)),
            Phase::Idle => Some((s.since + limits.keep_alive_timeout, Expiry::Idle)),
        }
    }

    /// Resolves once the deadline of the phase the connection is in has passed.
    async fn expired(&self, limits: Limits) -> Expiry {
        loop {
            let Some((at, why)) = self.deadline(limits) else {
                self.changed.notified().await;
                continue;
            };
            if at <= Instant::now() {
                return why;
            }
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = self.changed.notified() => {}
            }
        }
    }
}

/// One request in flight on its connection, until dropped with the response body.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its request in flight until hyper has taken it all (hyper drops
/// the body at its end, or with the connection).
struct InFlightBody {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for InFlightBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, reporting received bytes to its connection's [`Activity`].
struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(5),
        keep_alive_timeout: Duration::from_secs(30),
    };

    #[tokio::test(start_paused = true)]
    async fn a_fresh_connection_has_the_header_timeout_from_the_accept() {
        let start = Instant::now();
        let a = Activity::new(start);
        assert_eq!(a.expired(LIMITS).await, Expiry::HeadTimeout);
        assert_eq!(start.elapsed(), LIMITS.header_read_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn no_deadline_while_a_request_is_in_flight_then_the_keep_alive_one() {
        let a = Arc::new(Activity::new(Instant::now()));
        let request = a.begin();
        assert_eq!(a.deadline(LIMITS), None);
        let watchdog = tokio::spawn({
            let a = a.clone();
            async move { a.expired(LIMITS).await }
        });
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(
            !watchdog.is_finished(),
            "a long request is the 408's business"
        );
        let ended = Instant::now();
        drop(request);
        assert_eq!(watchdog.await.unwrap(), Expiry::Idle);
        assert_eq!(ended.elapsed(), LIMITS.keep_alive_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_after_idling_starts_the_header_timeout() {
        let a = Arc::new(Activity::new(Instant::now()));
        drop(a.begin());
        let watchdog = tokio::spawn({
            let a = a.clone();
            async move { a.expired(LIMITS).await }
        });
        tokio::time::sleep(Duration::from_secs(29)).await;
        let first_byte = Instant::now();
        a.received();
        // More bytes of the same head do not move its deadline.
        tokio::time::sleep(Duration::from_secs(2)).await;
        a.received();
        assert_eq!(watchdog.await.unwrap(), Expiry::HeadTimeout);
        assert_eq!(first_byte.elapsed(), LIMITS.header_read_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_keep_the_connection_busy_until_the_last_ends() {
        let a = Arc::new(Activity::new(Instant::now()));
        let first = a.begin();
        let second = a.begin();
        drop(first);
        assert_eq!(a.deadline(LIMITS), None);
        drop(second);
        let (_, why) = a.deadline(LIMITS).unwrap();
        assert_eq!(why, Expiry::Idle);
    }
}
