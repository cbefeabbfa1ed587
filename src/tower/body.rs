//! Body wrappers that watch a call to its end, on either side: they pass every frame
//! through untouched and count the gRPC messages in the data frames (reading the buffers
//! in place, never copying them). The request body carries what the client sends (received
//! by a server, sent by a client); the response body what the server sends, and it records
//! the call's end: when its last frame has gone (the trailers' `grpc-status`, else the
//! head's), or when it is dropped first (the client went away on a server; the caller
//! cancelled on a client).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::call::{Call, Direction};
use super::grpc::GrpcCode;
use crate::collector::Collector;

/// Counts length-prefixed gRPC messages in a byte stream, without copying it: each message
/// is a 1-byte flag, a 4-byte big-endian length, then that many bytes.
#[derive(Default)]
pub(crate) struct Frames {
    header: [u8; 5],
    have: usize,
    remaining: u64,
}

impl Frames {
    /// Feeds the next bytes; returns how many messages started in them.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut started = 0;
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let skip = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.remaining -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (5 - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have == 5 {
                started += 1;
                self.have = 0;
                let [_, a, b, c, d] = self.header;
                self.remaining = u64::from(u32::from_be_bytes([a, b, c, d]));
            }
        }
        started
    }
}

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
    /// sends (`grpc_server_msg_received_total` on a server, `grpc_client_msg_sent_total`
    /// on a client).
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
    /// The response body as the caller gets it: counts the messages the server sends
    /// (`grpc_server_msg_sent_total` on a server, `grpc_client_msg_received_total` on a
    /// client) and records the end of the call.
    pub struct ResponseBody<B, C: Collector> {
        #[pin]
        inner: B,
        call: Option<Arc<Call<C>>>,
        head_code: Option<GrpcCode>,
        frames: Frames,
    }

    impl<B, C: Collector> PinnedDrop for ResponseBody<B, C> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before its end: on a server the client went away; on a client the
            // caller cancelled.
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

    /// Watches `inner`; `head_code` is the `grpc-status` of the response's headers (a
    /// trailers-only response carries it there). A body that is empty from the start ends
    /// the call now: nobody may poll it.
    pub(crate) fn new(inner: B, call: Arc<Call<C>>, head_code: Option<GrpcCode>) -> Self
    where
        B: Body,
    {
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
                        // The last frame: nobody may poll again.
                        if this.inner.is_end_stream() {
                            call.finished(*this.head_code, None);
                            *this.call = None;
                        }
                    } else if let Some(trailers) = frame.trailers_ref() {
                        call.finished(*this.head_code, GrpcCode::of(trailers));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_across_any_split() {
        let mut stream = Vec::new();
        for len in [0u32, 3, 70_000] {
            stream.push(0);
            stream.extend_from_slice(&len.to_be_bytes());
            stream.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for chunk in [1, 2, 4, 5, 6, 1000, stream.len()] {
            let mut frames = Frames::default();
            let counted: u64 = stream.chunks(chunk).map(|c| frames.feed(c)).sum();
            assert_eq!(counted, 3, "chunks of {chunk}");
        }
    }
}
