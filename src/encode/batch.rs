//! How a push's encoders (OTLP, Remote-Write) cut one walk of the store into requests
//! bounded by samples and bytes, and write stale markers instead of values.
//!
//! An encoder appends series to its request until the request holds
//! [`Limits::samples`] samples (Remote-Write samples and native histograms, OTLP data
//! points) or [`Limits::bytes`] bytes (uncompressed), checked after each whole series (a
//! histogram is never split). It then closes the request and hands it to its [`Cut`], which
//! compresses and queues it (blocking while the sender's queue is full: memory is bounded
//! by the batch, not by the store), and starts the next one with the same family.

use super::Encoder;

/// How large one request may grow before it is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Samples and native histograms (Remote-Write), or data points (OTLP).
    pub(crate) samples: usize,
    /// Bytes of the encoded request, before compression.
    pub(crate) bytes: usize,
}

impl Limits {
    /// No limit: the whole store in one request.
    #[cfg(test)]
    pub(crate) const NONE: Limits = Limits {
        samples: usize::MAX,
        bytes: usize::MAX,
    };
}

/// What one request carries, for the receiver's answer to be checked against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Float samples (Remote-Write) or data points (OTLP).
    pub(crate) samples: u64,
    /// Native histograms (Remote-Write; in OTLP a histogram is a data point).
    pub(crate) histograms: u64,
    pub(crate) exemplars: u64,
}

impl Sent {
    fn points(&self) -> u64 {
        self.samples.saturating_add(self.histograms)
    }
}

/// Where an encoder's requests go; see the module documentation.
pub(crate) struct Cut<'a> {
    limits: Limits,
    /// Takes one request's encoded body; `false` when nobody will send it (the push was
    /// given up): the rest of the walk is then written nowhere.
    sink: &'a mut dyn FnMut(&[u8], Sent) -> bool,
    closed: bool,
}

impl<'a> Cut<'a> {
    pub(crate) fn new(limits: Limits, sink: &'a mut dyn FnMut(&[u8], Sent) -> bool) -> Self {
        Self {
            limits,
            sink,
            closed: false,
        }
    }

    /// Whether a request holding `sent` in `bytes` is to be cut now.
    pub(crate) fn full(&self, sent: &Sent, bytes: usize) -> bool {
        sent.points() >= self.limits.samples as u64 || bytes >= self.limits.bytes
    }

    /// Hands one request on, unless nobody takes them any more.
    pub(crate) fn send(&mut self, body: &[u8], sent: Sent) {
        if !self.closed {
            self.closed = !(self.sink)(body, sent);
        }
    }

    /// Whether requests are no longer taken (encoding on is wasted work).
    pub(crate) fn closed(&self) -> bool {
        self.closed
    }
}

/// An encoder of pushes, which can write stale markers.
pub(crate) trait Marks: Encoder {
    /// From now on, every series is written as ended at `stamp_ms` (ms since the Unix
    /// epoch): a stale marker (Remote-Write's StaleNaN, OTLP's `NO_RECORDED_VALUE` flag)
    /// instead of its value, and no exemplar.
    fn stale_from(&mut self, stamp_ms: i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_cut_at_either_limit_and_a_closed_sink_takes_nothing() {
        let mut taken = Vec::new();
        let mut sink = |body: &[u8], sent: Sent| {
            taken.push((body.to_vec(), sent));
            taken.len() < 2
        };
        let mut cut = Cut::new(
            Limits {
                samples: 10,
                bytes: 100,
            },
            &mut sink,
        );
        let sent = |samples, histograms| Sent {
            samples,
            histograms,
            exemplars: 0,
        };
        assert!(!cut.full(&sent(5, 4), 99));
        assert!(cut.full(&sent(5, 5), 0), "histograms count as samples");
        assert!(cut.full(&sent(0, 0), 100));
        cut.send(b"a", sent(1, 0));
        cut.send(b"b", sent(1, 0));
        assert!(cut.closed());
        cut.send(b"c", sent(1, 0));
        assert_eq!(taken.len(), 2, "nothing after the sink said no");
    }
}
