//! Remote-Write: 2.0 requests, snappy-compressed, falling back to 1.0 for a receiver that
//! answers `415`, a `400` without the 2.0 `X-Prometheus-Remote-Write-*-Written` headers,
//! or a success without them (a 1.0 receiver took the body as an empty 1.0 request); to
//! escaped names for one that refuses UTF-8 names; to classic buckets for one that
//! refuses native histograms.

use hyper::body::Bytes;
use hyper::{Method, StatusCode};

use super::{contains, refusal, refuses_native, walk, Exchange, Fallback, Job, Request, Verdict};
use crate::encode::batch::{Cut, Sent as Counts};
use crate::encode::remote_write::v1::RemoteWriteV1;
use crate::encode::remote_write::v2::{RemoteWriteV2, CONTENT_TYPE as V2};
use crate::encode::remote_write::Symbols;
use crate::encode::Escaping;
use crate::push::client::Answer;
use crate::push::outcome::Reason;
use crate::PushError;

const V2_HEADERS: &[(&str, &str)] = &[
    ("content-type", V2),
    ("content-encoding", "snappy"),
    ("x-prometheus-remote-write-version", "2.0.0"),
];

const V1_HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/x-protobuf"),
    ("content-encoding", "snappy"),
    ("x-prometheus-remote-write-version", "0.1.0"),
];

/// See the module documentation.
pub(crate) struct RemoteWrite;

/// The room of a target's pushes: the last request, uncompressed and compressed, and the
/// symbol table (their room is reused; a request takes a copy of the compressed one).
pub(crate) struct Room {
    body: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
    symbols: Symbols,
}

impl Default for Room {
    fn default() -> Self {
        Self {
            body: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
            symbols: Symbols::default(),
        }
    }
}

/// What one request carried, and how it was encoded.
pub(crate) struct Sent {
    counts: Counts,
    v1: bool,
    escaped: bool,
    classic: bool,
}

impl Exchange for RemoteWrite {
    type Room = Room;
    type Sent = Sent;

    fn encode(
        &self,
        room: &mut Room,
        job: &Job,
        send: &mut dyn FnMut(Request<Sent>) -> bool,
    ) -> Result<(), PushError> {
        let v1 = job.learnt.has(Fallback::RemoteWriteV1);
        let escaped = v1 || job.learnt.has(Fallback::EscapedNames);
        let classic = v1 || job.learnt.has(Fallback::ClassicHistograms);
        let escaping = if escaped {
            Escaping::Underscores
        } else {
            Escaping::AllowUtf8
        };
        let (window, limits) = (job.window(), job.limits());
        let Room {
            body,
            compressed,
            snappy,
            symbols,
        } = room;
        let mut failed = None;
        let mut sink = |encoded: &[u8], counts: Counts| match compress(snappy, encoded, compressed)
        {
            Ok(body) => send(Request {
                method: Method::POST,
                headers: if v1 { V1_HEADERS } else { V2_HEADERS },
                body,
                sent: Sent {
                    counts,
                    v1,
                    escaped,
                    classic,
                },
            }),
            Err(e) => {
                failed = Some(e);
                false
            }
        };
        let cut = Cut::new(limits, &mut sink);
        let labels = &job.identity.labels;
        if v1 {
            let mut encoder = RemoteWriteV1::new(body, labels, job.stamp_ms, window, cut);
            walk(job, escaping, &mut encoder);
        } else {
            let mut encoder =
                RemoteWriteV2::new(body, symbols, labels, job.stamp_ms, window, !classic, cut);
            walk(job, escaping, &mut encoder);
        }
        failed.map_or(Ok(()), Err)
    }

    fn judge(&self, answer: &Answer, sent: &Sent) -> Verdict {
        if refuses_native(answer) && !sent.classic {
            return Verdict::Fallback(Fallback::ClassicHistograms);
        }
        let written = |kind: &str| {
            answer
                .headers
                .get(format!("x-prometheus-remote-write-{kind}-written"))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let counts = [
            written("samples"),
            written("histograms"),
            written("exemplars"),
        ];
        let status = answer.status;
        let from_v1 = counts.iter().all(Option::is_none)
            && (status.is_success() || status == StatusCode::BAD_REQUEST);
        if !sent.v1 && (status == StatusCode::UNSUPPORTED_MEDIA_TYPE || from_v1) {
            return Verdict::Fallback(Fallback::RemoteWriteV1);
        }
        if refuses_names(answer) && !sent.escaped {
            return Verdict::Fallback(Fallback::EscapedNames);
        }
        if !status.is_success() {
            return refusal(answer, |status| status.is_server_error());
        }
        // Exemplars may be refused (exemplar storage off) without losing a sample.
        let short = [
            (counts[0], sent.counts.samples),
            (counts[1], sent.counts.histograms),
        ]
        .iter()
        .any(|(got, sent)| got.is_some_and(|got| got < *sent));
        match short && !sent.v1 {
            true => Verdict::Drop(Reason::Partial),
            false => Verdict::Done,
        }
    }
}

/// Whether the receiver refused a request for names that are not legacy ones (Mimir and
/// Cortex with legacy validation: "received a series with an invalid metric name").
pub(crate) fn refuses_names(answer: &Answer) -> bool {
    answer.status == StatusCode::BAD_REQUEST
        && (contains(&answer.body, "invalid metric name")
            || contains(&answer.body, "invalid label"))
}

/// `body` snappy-compressed (the block format Remote-Write asks for), through `room`.
fn compress(
    snappy: &mut snap::raw::Encoder,
    body: &[u8],
    room: &mut Vec<u8>,
) -> Result<Bytes, PushError> {
    room.resize(snap::raw::max_compress_len(body.len()), 0);
    let written = snappy
        .compress(body, room)
        .map_err(|e| PushError::Request(e.into()))?;
    Ok(Bytes::copy_from_slice(&room[..written]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::protocol::tests::answer;

    fn sent(v1: bool, samples: u64) -> Sent {
        Sent {
            counts: Counts {
                samples,
                histograms: 0,
                exemplars: 0,
            },
            v1,
            escaped: v1,
            classic: v1,
        }
    }

    #[cfg(feature = "testing")]
    #[test]
    fn remote_write_bodies_back_to_back_never_share_a_timestamp() {
        use crate::encode::remote_write::Request;
        use crate::Collector;
        use prost::Message;

        let recorder = crate::Builder::new().build_local();
        recorder.collector().increment_counter("jobs_total", &[]);
        let target =
            crate::PushTarget::remote_write("http://127.0.0.1:1/api/v1/write").expect("valid");
        let mut encoder = crate::testing::PushEncoder::new(&recorder, &target);
        let mut decoder = snap::raw::Decoder::new();
        let mut last = i64::MIN;
        // Far more bodies than milliseconds pass: each is stamped later than the one before.
        for _ in 0..200 {
            let body = decoder
                .decompress_vec(&encoder.body().expect("a body"))
                .expect("snappy");
            let request = Request::decode(body.as_slice()).expect("a request");
            let stamps: Vec<i64> = request
                .timeseries
                .iter()
                .flat_map(|s| s.samples.iter().map(|p| p.timestamp))
                .collect();
            let first = *stamps.first().expect("samples");
            assert!(stamps.iter().all(|t| *t == first), "one timestamp a body");
            assert!(first > last, "{first} after {last}");
            last = first;
        }
    }

    #[test]
    fn refused_names_are_recognised() {
        use crate::push::protocol::tests::with_body;
        let mimir = with_body(
            400,
            &[],
            "received a series with an invalid metric name: 'a.b'",
        );
        assert!(refuses_names(&mimir));
        assert!(!refuses_names(&with_body(400, &[], "out of order sample")));
        let escaped = Verdict::Fallback(Fallback::EscapedNames);
        let two = [("x-prometheus-remote-write-samples-written", "0")];
        let refused = with_body(400, &two, "invalid metric name");
        assert_eq!(RemoteWrite.judge(&refused, &sent(false, 1)), escaped);
    }

    #[test]
    fn remote_write_falls_back_to_1_0_on_any_sign_of_a_1_0_receiver() {
        let rw = RemoteWrite;
        let written = [
            ("x-prometheus-remote-write-samples-written", "3"),
            ("x-prometheus-remote-write-histograms-written", "0"),
        ];
        assert_eq!(
            rw.judge(&answer(204, &written), &sent(false, 3)),
            Verdict::Done
        );
        let short = [("x-prometheus-remote-write-samples-written", "2")];
        assert_eq!(
            rw.judge(&answer(204, &short), &sent(false, 3)),
            Verdict::Drop(Reason::Partial)
        );
        let v1 = Verdict::Fallback(Fallback::RemoteWriteV1);
        // A success without the headers is a 1.0 receiver; so are a 415 and a bare 400.
        assert_eq!(rw.judge(&answer(204, &[]), &sent(false, 3)), v1);
        assert_eq!(rw.judge(&answer(415, &[]), &sent(false, 3)), v1);
        assert_eq!(rw.judge(&answer(400, &[]), &sent(false, 3)), v1);
        // A 2.0 receiver's 400 (out of order, say) says what it wrote: dropped.
        let none = [("x-prometheus-remote-write-samples-written", "0")];
        assert_eq!(
            rw.judge(&answer(400, &none), &sent(false, 3)),
            Verdict::Drop(Reason::Rejected)
        );
        // Once 1.0, for good.
        assert_eq!(rw.judge(&answer(204, &[]), &sent(true, 3)), Verdict::Done);
        assert_eq!(
            rw.judge(&answer(415, &[]), &sent(true, 3)),
            Verdict::Drop(Reason::Rejected)
        );
    }
}
