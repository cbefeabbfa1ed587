//! Where a render writes: one buffer, or chunks handed over as they fill (a scrape's body
//! streams to the socket while the rest is rendered, and no exposition is held whole).

/// Bytes of a chunk before it is handed over.
pub(crate) const CHUNK: usize = 256 * 1024;

/// What takes a full chunk; it may give back an emptied buffer to fill next.
pub(crate) type Sink<'a> = &'a mut dyn FnMut(Vec<u8>) -> Option<Vec<u8>>;

/// See the module documentation.
pub(crate) struct Out<'a> {
    /// What is being written.
    pub(crate) buf: Vec<u8>,
    sink: Option<Sink<'a>>,
}

impl<'a> Out<'a> {
    /// One buffer, returned by [`finish`](Self::finish).
    pub(crate) fn whole(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
            sink: None,
        }
    }

    /// Chunks of about [`CHUNK`] bytes, each handed to `sink` once full.
    pub(crate) fn chunked(sink: Sink<'a>) -> Self {
        Self {
            buf: Vec::with_capacity(CHUNK + CHUNK / 8),
            sink: Some(sink),
        }
    }

    /// Hands the buffer over if it is full (called between series).
    #[inline]
    pub(crate) fn flush_if_full(&mut self) {
        if self.buf.len() >= CHUNK && self.sink.is_some() {
            self.hand_over();
        }
    }

    fn hand_over(&mut self) {
        let Some(sink) = &mut self.sink else { return };
        if self.buf.is_empty() {
            return;
        }
        let next = Vec::with_capacity(CHUNK + CHUNK / 8);
        let full = std::mem::replace(&mut self.buf, next);
        if let Some(mut again) = sink(full) {
            again.clear();
            self.buf = again;
        }
    }

    /// Appends `bytes` made elsewhere (a protobuf family's body): moved as a chunk of its
    /// own when chunked, not copied.
    pub(crate) fn append(&mut self, bytes: &mut Vec<u8>) {
        match self.sink.is_some() && bytes.len() >= CHUNK / 4 {
            true => {
                self.hand_over();
                if let Some(sink) = &mut self.sink {
                    let _ = sink(std::mem::take(bytes));
                }
            }
            false => {
                self.buf.extend_from_slice(bytes);
                bytes.clear();
                self.flush_if_full();
            }
        }
    }

    /// Hands over what is left; gives the whole buffer when there is no sink.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.hand_over();
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_come_in_order_and_nothing_is_lost() {
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut sink = |chunk: Vec<u8>| {
            got.push(chunk);
            None
        };
        let mut out = Out::chunked(&mut sink);
        let mut expected = Vec::new();
        for i in 0..CHUNK / 100 * 3 {
            let line = format!("line {i:>94}\n");
            out.buf.extend_from_slice(line.as_bytes());
            expected.extend_from_slice(line.as_bytes());
            out.flush_if_full();
        }
        let mut body = vec![7u8; CHUNK];
        out.append(&mut body);
        expected.extend(std::iter::repeat_n(7u8, CHUNK));
        out.buf.push(b'!');
        expected.push(b'!');
        assert!(out.finish().is_empty());
        assert!(got.len() >= 4, "{}", got.len());
        assert_eq!(got.concat(), expected);
        let mut whole = Out::whole(0);
        whole.buf.push(1);
        whole.append(&mut vec![2; 3]);
        assert_eq!(whole.finish(), [1, 2, 2, 2]);
    }
}
