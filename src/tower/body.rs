//! Body wrappers that watch a call to its end: they pass every frame through untouched,
//! count the gRPC messages in the data frames (reading the buffers in place, never copying
//! them), and, for the response, record the end when the last frame has gone, or
//! `Canceled` when the body is dropped first.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::call::{grpc_code, Call, Direction, Frames};
use crate::collector::Collector;

/// Feeds the bytes of `data` to `frames` without consuming them. A frame's buffer is read
/// through `chunks_vectored`: all of it for the buffers hyper and tonic use (`Bytes`, one
/// chunk), the first 64 chunks of any other.
fn count_messages(frames: &mut Frames, data: &impl Buf) -> u64 {
    let mut slices = [std::io::IoSlice::new(&[]); 64];
    let filled = data.chunks_vectored(&mut slices);
    slices[..filled].iter().map(|s| frames.feed(s)).sum()
}

pin_project! {
    /// The request body as the wrapped service sees it: counts the messages the client
    /// sends (`grpc_server_msg_received_total`).
    pub struct RequestBody<B, C: Collector> {
        #[pin]
        inner: B,
        call: Arc<Call<C>>,
        frames: Frames,
    }
}

impl<B, C: Collector> RequestBody<B, C> {
    pub(crate) fn new(inner: B, call: Arc<Call<C>>) -> Self {
        Self {
            inner,
            call,
            frames: Frames::default(),
        }
    }
}

impl<B: Body, C: Collector> Body for RequestBody<B, C> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let Some(data) = frame.data_ref() {
                if this.call.counts_messages() {
                    this.call
                        .messages(Direction::Request, count_messages(this.frames, data));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The response body as the client gets it: counts the messages the server sends
    /// (`grpc_server_msg_sent_total`) and records the end of the call.
    pub struct ResponseBody<B, C: Collector> {
        #[pin]
        inner: B,
        call: Option<Arc<Call<C>>>,
        head_code: Option<usize>,
        frames: Frames,
    }

    impl<B, C: Collector> PinnedDrop for ResponseBody<B, C> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before its end: the client cancelled (or went away).
            if let Some(call) = this.project().call.take() {
                call.canceled();
            }
        }
    }
}

impl<B, C: Collector> ResponseBody<B, C> {
    /// Passes `inner` through, watching nothing.
    pub(crate) fn unwatched(inner: B) -> Self {
        Self {
            inner,
            call: None,
            head_code: None,
            frames: Frames::default(),
        }
    }

    /// Watches `inner`; `head` is the response's headers (a trailers-only response carries
    /// its `grpc-status` there). A body that is empty from the start ends the call now: the
    /// server may never poll it.
    pub(crate) fn new(inner: B, call: Arc<Call<C>>, head: &HeaderMap) -> Self
    where
        B: Body,
    {
        let head_code = grpc_code(head);
        let call = if inner.is_end_stream() {
            call.finished(head_code, None);
            None
        } else {
            Some(call)
        };
        Self {
            inner,
            call,
            head_code,
            frames: Frames::default(),
        }
    }
}

impl<B: Body, C: Collector> Body for ResponseBody<B, C> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(call) = this.call.as_ref() {
                    if let Some(data) = frame.data_ref() {
                        if call.counts_messages() {
                            call.messages(Direction::Response, count_messages(this.frames, data));
                        }
                        // The last frame: the server may not poll again.
                        if this.inner.is_end_stream() {
                            call.finished(*this.head_code, None);
                            *this.call = None;
                        }
                    } else if let Some(trailers) = frame.trailers_ref() {
                        call.finished(*this.head_code, grpc_code(trailers));
                        *this.call = None;
                    }
                }
            }
            // The last frame has gone: no trailers, so the head decides.
            None => {
                if let Some(call) = this.call.take() {
                    call.finished(*this.head_code, None);
                }
            }
            // The body failed: the stream is cut.
            Some(Err(_)) => {
                if let Some(call) = this.call.take() {
                    call.broken();
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
