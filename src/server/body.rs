//! A scrape's body as it is rendered: the render (on the blocking pool) hands chunks over
//! a bounded channel, hyper takes them as the socket does, so no exposition is held whole.

/// What a render hands its body over with: the whole of a small exposition (one chunk:
/// it gets a `Content-Length`), else the chunks of a larger one as they come, then its end.
enum Message {
    Whole(hyper::body::Bytes),
    Chunk(hyper::body::Bytes),
    End,
}

/// A scrape's body as it is rendered (see [`Chunks`]), as hyper asks for it. A render that
/// ends before the exposition does (it panicked) ends the body with an error, so that the
/// client sees a broken response, not a short one.
pub(crate) struct Streamed {
    chunks: tokio::sync::mpsc::Receiver<Message>,
    /// The first chunk, read to tell a small exposition from a streamed one.
    first: Option<hyper::body::Bytes>,
    done: bool,
    /// Run once the last chunk is handed over (or the body is dropped before).
    when_done: Option<Box<dyn FnOnce() + Send + Sync>>,
}

/// The render's end of a [`Streamed`] body.
pub(crate) struct Chunks {
    tx: tokio::sync::mpsc::Sender<Message>,
    /// The first chunk, held until the second comes or the render ends.
    held: Option<Vec<u8>>,
    /// Whether chunks went out (the exposition is streamed).
    streaming: bool,
}

/// Chunks a render runs ahead of the socket: what a scrape holds at once.
const AHEAD: usize = 4;

/// What a started render gives: a small exposition whole, or a streamed one.
pub(crate) enum Started {
    Whole(hyper::body::Bytes),
    Streamed(Streamed),
}

impl Streamed {
    /// A body, and its render's end.
    pub(crate) fn channel() -> (Self, Chunks) {
        let (tx, chunks) = tokio::sync::mpsc::channel(AHEAD);
        let body = Self {
            chunks,
            first: None,
            done: false,
            when_done: None,
        };
        (
            body,
            Chunks {
                tx,
                held: None,
                streaming: false,
            },
        )
    }

    /// Runs `done` once the last chunk is handed over, or the body is dropped before.
    pub(crate) fn when_done(&mut self, done: Box<dyn FnOnce() + Send + Sync>) {
        self.when_done = Some(done);
    }

    fn ended(&mut self) {
        self.done = true;
        if let Some(done) = self.when_done.take() {
            done();
        }
    }

    /// Waits for the render's first word: `None` if it failed before it.
    pub(crate) async fn start(mut self) -> Option<Started> {
        match self.chunks.recv().await? {
            Message::Whole(all) => Some(Started::Whole(all)),
            Message::Chunk(first) => {
                self.first = Some(first);
                Some(Started::Streamed(self))
            }
            Message::End => Some(Started::Whole(hyper::body::Bytes::new())),
        }
    }
}

impl Chunks {
    /// Hands `chunk` over, waiting while [`AHEAD`] are not sent yet (on a thread that may
    /// block: a render's). A client gone drops it.
    pub(crate) fn send(&mut self, chunk: Vec<u8>) {
        if !self.streaming {
            match self.held.take() {
                // Nothing sent yet: this may be the whole exposition.
                None => return self.held = Some(chunk),
                Some(first) => {
                    self.streaming = true;
                    let _ = self.tx.blocking_send(Message::Chunk(first.into()));
                }
            }
        }
        let _ = self.tx.blocking_send(Message::Chunk(chunk.into()));
    }

    /// The exposition is complete.
    pub(crate) fn finish(mut self) {
        let last = match self.held.take() {
            Some(all) => Message::Whole(all.into()),
            None => Message::End,
        };
        let _ = self.tx.blocking_send(last);
    }
}

impl hyper::body::Body for Streamed {
    type Data = hyper::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use hyper::body::Frame;
        use std::task::Poll;
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match self.chunks.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Message::Chunk(chunk) | Message::Whole(chunk))) => {
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Message::End)) => {
                self.ended();
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(Some(Err(std::io::Error::other(
                "porter-metrics: the render ended before the exposition did",
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.first.is_none()
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        self.ended();
    }
}
