//! The conformance suite every [`HealthChecker`] must pass, for checker authors (feature
//! `testing`).
//!
//! [`conformance`] checks that a checker passes on an endpoint that serves, and fails with
//! [`CheckError::Unreachable`] (a typed error, never a panic) on an endpoint where nothing
//! listens and on one with no usable address. What "serves" means is the checker's business (an
//! HTTP health route, a gRPC health service, a database), so the caller starts that endpoint
//! and passes it in; the suite makes the other two. A violation panics with an assertion
//! message, which is what a test wants. Our `TcpChecker`, `FnChecker` and `HttpChecker` run this
//! same suite (`tests/conformance.rs`).
//!
//! ```rust,no_run
//! use steadfast_service_registry::{Endpoint, TcpChecker};
//!
//! # async fn demo() {
//! // Something listening on 127.0.0.1:8080.
//! steadfast_service_registry::testing::conformance(
//!     TcpChecker,
//!     &Endpoint::new("http://127.0.0.1:8080"),
//! )
//! .await;
//! # }
//! ```

use crate::{CheckError, Endpoint, HealthChecker};

/// Runs the suite against `checker`; panics at the first violation.
///
/// `serving` must be an endpoint the checker should find healthy (started by the test). The
/// suite then checks a `127.0.0.1` port where nothing listens and an endpoint without an
/// address (`no-port-here`): both must fail with [`CheckError::Unreachable`].
pub async fn conformance<C: HealthChecker>(checker: C, serving: &Endpoint) {
    checker
        .check(serving)
        .await
        .expect("a serving endpoint passes");

    let down = closed_port().await;
    let err = checker
        .check(&Endpoint::new(down))
        .await
        .expect_err("nothing listening fails");
    assert!(matches!(err, CheckError::Unreachable(_)), "{err:?}");

    let err = checker
        .check(&Endpoint::new("no-port-here"))
        .await
        .expect_err("an endpoint without an address fails");
    assert!(matches!(err, CheckError::Unreachable(_)), "{err:?}");
}

/// An address on which nothing listens (bound, then released).
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}")
}
