//! The layer's response body: a buffered body, or the handler's own streamed through.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response [`IdempotencyService`](crate::http::IdempotencyService)
/// returns: the layer's own answers and replays (in memory), the handler's body passed
/// through, or the chunks read while checking a response against `max_response_bytes`
/// followed by the rest of the handler's body, streamed.
pub struct ResponseBody<B> {
    /// Chunks already read from `rest` (or the whole body), sent first.
    head: VecDeque<Bytes>,
    /// The handler's body, when anything of it is left to stream.
    rest: Option<Pin<Box<B>>>,
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("head_chunks", &self.head.len())
            .field("streaming", &self.rest.is_some())
            .finish()
    }
}

impl<B> ResponseBody<B> {
    /// A body held in memory.
    pub(crate) fn full(bytes: Bytes) -> Self {
        ResponseBody {
            head: VecDeque::from([bytes]),
            rest: None,
        }
    }

    /// `head`, then whatever `rest` still yields.
    pub(crate) fn resumed(head: VecDeque<Bytes>, rest: Pin<Box<B>>) -> Self {
        ResponseBody {
            head,
            rest: Some(rest),
        }
    }

    /// The handler's body, untouched.
    pub(crate) fn streamed(body: B) -> Self {
        ResponseBody {
            head: VecDeque::new(),
            rest: Some(Box::pin(body)),
        }
    }
}

impl<B> From<Bytes> for ResponseBody<B> {
    fn from(bytes: Bytes) -> Self {
        ResponseBody::full(bytes)
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Every field is `Unpin` (the handler's body is boxed).
        let this = self.get_mut();
        while let Some(chunk) = this.head.pop_front() {
            if !chunk.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
        }
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        match rest.as_mut().poll_frame(cx) {
            Poll::Ready(None) => {
                this.rest = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.iter().all(Bytes::is_empty)
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let head: u64 = self.head.iter().map(|c| c.len() as u64).sum();
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |r| r.size_hint());
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(head));
        }
        hint.set_lower(rest.lower().saturating_add(head));
        hint
    }
}
