use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::call::Classifier;
use crate::error::{CallError, Rejected};
use crate::permit::OwnedPermit;

pin_project! {
    /// The response future of [`super::CircuitBreakerService`]. Dropping it before it
    /// completes records nothing and gives a HalfOpen probe back.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F>,
        permit: Option<OwnedPermit>,
        classifier: Option<C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Rejected { rejected: Rejected },
        Running {
            #[pin]
            future: F,
            #[pin]
            sleep: Option<Sleep>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn running(
        future: F,
        permit: OwnedPermit,
        classifier: C,
        timeout: Option<Duration>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Running {
                future,
                sleep: timeout.map(tokio::time::sleep),
            },
            permit: Some(permit),
            classifier: Some(classifier),
        }
    }

    pub(crate) fn rejected(rejected: Rejected) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { rejected },
            permit: None,
            classifier: None,
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classifier<T, E>,
{
    type Output = Result<T, CallError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Rejected { rejected } => Poll::Ready(Err(CallError::Rejected(*rejected))),
            KindProj::Running { future, sleep } => {
                if let Poll::Ready(result) = future.poll(cx) {
                    if let (Some(permit), Some(classifier)) =
                        (this.permit.take(), this.classifier.as_ref())
                    {
                        permit.record(classifier.classify(&result));
                    }
                    return Poll::Ready(result.map_err(CallError::Inner));
                }
                if let Some(sleep) = sleep.as_pin_mut() {
                    if sleep.poll(cx).is_ready() {
                        if let Some(permit) = this.permit.take() {
                            permit.failure();
                        }
                        return Poll::Ready(Err(CallError::Timeout));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
