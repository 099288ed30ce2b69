//! A tower [`Layer`](tower_layer::Layer) that puts a [`CircuitBreaker`](crate::CircuitBreaker)
//! in front of any [`Service`](tower_service::Service) (feature `tower`).
//!
//! The classifier sees the inner service's whole result, so a response can count as a
//! failure (an HTTP 5xx) and an error can be ignored. The breaker's call timeout, when set,
//! bounds each call (the response future then needs a tokio runtime with time enabled).
//!
//! `poll_ready` is the inner service's: the breaker decides in `call`, so a rejected request
//! costs no work of the inner service and returns [`CallError::Rejected`](crate::CallError)
//! at once.
//!
//! ```
//! use std::convert::Infallible;
//! use steadfast_circuit_breaker::{CircuitBreaker, Config, Outcome, tower::CircuitBreakerLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreaker::new(Config::standard());
//! let mut svc = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(
//!         |r: &Result<http::Response<()>, Infallible>| match r {
//!             Ok(resp) if resp.status().is_server_error() => Outcome::Failure,
//!             Ok(_) => Outcome::Success,
//!             Err(_) => Outcome::Failure,
//!         },
//!     ))
//!     .service(service_fn(|_req: ()| async {
//!         Ok::<_, Infallible>(http::Response::builder().status(503).body(()).unwrap())
//!     }));
//! let resp = svc.ready().await.unwrap().call(()).await.unwrap();
//! assert_eq!(resp.status(), 503);
//! assert_eq!(breaker.metrics().failures, 1);
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreakerService;
