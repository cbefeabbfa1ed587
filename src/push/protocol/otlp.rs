//! OTLP/HTTP: protobuf requests, gzipped; a partial success drops what it rejected; only
//! `502`, `503` and `504` are retried, as the OTLP/HTTP specification says; a receiver that
//! refuses native histograms gets their classic buckets.

use hyper::body::Bytes;
use hyper::Method;

use super::{refusal, refuses_native, walk, Exchange, Fallback, Job, Request, Verdict};
use crate::encode::batch::{Cut, Sent as Counts};
use crate::encode::otlp::{rejected, Buffers, Otlp as Encoder};
use crate::encode::Escaping;
use crate::push::client::Answer;
use crate::push::outcome::Reason;
use crate::PushError;

const HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/x-protobuf"),
    ("content-encoding", "gzip"),
];

/// See the module documentation.
pub(crate) struct Otlp;

/// The room of a target's pushes: the last request, uncompressed and compressed, and the
/// encoder's buffers.
#[derive(Default)]
pub(crate) struct Room {
    body: Vec<u8>,
    compressed: Vec<u8>,
    buffers: Buffers,
}

/// How one request was encoded.
pub(crate) struct Sent {
    classic: bool,
}

impl Exchange for Otlp {
    type Room = Room;
    type Sent = Sent;

    fn encode(
        &self,
        room: &mut Room,
        job: &Job,
        send: &mut dyn FnMut(Request<Sent>) -> bool,
    ) -> Result<(), PushError> {
        let classic = job.learnt.has(Fallback::ClassicHistograms);
        let (window, limits) = (job.window(), job.limits());
        let now_ns = u64::try_from(job.stamp_ms)
            .unwrap_or_default()
            .saturating_mul(1_000_000);
        let start_ns = job.source.epoch_ms().saturating_mul(1_000_000);
        let Room {
            body,
            compressed,
            buffers,
        } = room;
        let mut failed = None;
        let mut sink = |encoded: &[u8], _: Counts| match gzip(encoded, compressed) {
            Ok(body) => send(Request {
                method: Method::POST,
                headers: HEADERS,
                body,
                sent: Sent { classic },
            }),
            Err(e) => {
                failed = Some(e);
                false
            }
        };
        let cut = Cut::new(limits, &mut sink);
        let resource = &job.identity.resource;
        let mut encoder = Encoder::new(
            body,
            buffers,
            resource,
            (now_ns, start_ns),
            window,
            !classic,
            cut,
        );
        walk(job, Escaping::AllowUtf8, &mut encoder);
        drop(encoder);
        failed.map_or(Ok(()), Err)
    }

    fn judge(&self, answer: &Answer, sent: &Sent) -> Verdict {
        if refuses_native(answer) && !sent.classic {
            return Verdict::Fallback(Fallback::ClassicHistograms);
        }
        if !answer.status.is_success() {
            return refusal(answer, |status| matches!(status.as_u16(), 502..=504));
        }
        match rejected(&answer.body) {
            Some(_) => Verdict::Drop(Reason::Partial),
            None => Verdict::Done,
        }
    }
}

/// `body` gzipped (as the listener gzips a scrape), through `room`.
fn gzip(body: &[u8], room: &mut Vec<u8>) -> Result<Bytes, PushError> {
    crate::encode::gzip::gzip(body, room)
        .map(Bytes::copy_from_slice)
        .map_err(|e| PushError::Request(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::protocol::tests::answer;

    #[test]
    fn otlp_retries_only_its_transient_statuses_and_drops_partial_successes() {
        let otlp = Otlp;
        let sent = Sent { classic: false };
        assert_eq!(
            otlp.judge(&answer(500, &[]), &sent),
            Verdict::Drop(Reason::Rejected)
        );
        assert!(matches!(
            otlp.judge(&answer(503, &[]), &sent),
            Verdict::Retry(..)
        ));
        assert_eq!(otlp.judge(&answer(200, &[]), &sent), Verdict::Done);
    }
}
