//! The response future: waits for the wrapped service's response, then hands its body to
//! [`ResponseBody`] to watch to its end.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::call::Call;
use super::grpc::GrpcCode;
use crate::collector::Collector;

pin_project! {
    /// The future of a [`MetricsService`](super::MetricsService) call.
    pub struct ResponseFuture<F, C: Collector> {
        #[pin]
        inner: F,
        call: Option<Arc<Call<C>>>,
    }

    impl<F, C: Collector> PinnedDrop for ResponseFuture<F, C> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the response: the client went away while the service worked
            // (on a client: the caller cancelled before the head).
            if let Some(call) = this.project().call.take() {
                call.canceled();
            }
        }
    }
}

impl<F, C: Collector> ResponseFuture<F, C> {
    pub(crate) fn new(inner: F, call: Arc<Call<C>>) -> Self {
        Self {
            inner,
            call: Some(call),
        }
    }
}

impl<F, B, E, C> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    C: Collector,
{
    type Output = Result<Response<ResponseBody<B, C>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(call) = this.call.take() else {
            // Polled after completion: the inner future decides what that means.
            return Poll::Ready(result.map(|r| r.map(|b| ResponseBody::unwatched(b))));
        };
        Poll::Ready(match result {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let head = GrpcCode::of(&parts.headers);
                // A gRPC call's labels are decided here if they waited for the head.
                call.responded(parts.status, head);
                if call.counts_messages() && parts.status != StatusCode::OK {
                    // An HTTP error before any gRPC response (a router's 404, say).
                    call.failed_with_status(parts.status);
                }
                let body = ResponseBody::new(body, call, head);
                Ok(Response::from_parts(parts, body))
            }
            Err(e) => {
                call.errored();
                Err(e)
            }
        })
    }
}
