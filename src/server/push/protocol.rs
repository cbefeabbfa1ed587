//! What each protocol sends and how it reads the answer: the body (encoded from the one
//! store into a buffer reused from push to push, then compressed), the headers, and the
//! verdict on the receiver's answer (done, retry, drop, or send again in Remote-Write 1.0).

// Built with only some of the protocols, parts of this file go unused.
#![cfg_attr(
    not(all(feature = "otlp", feature = "remote-write")),
    allow(dead_code, unused_imports, unused_variables)
)]

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::client::Answer;
use super::stats::Reason;
use crate::encode::{Format, Negotiated};
use crate::pipeline::Source;
use crate::push_target::{Protocol, PushTarget};
use crate::PushError;

/// The `User-Agent` of every push.
const AGENT: &str = concat!("porter-metrics/", env!("CARGO_PKG_VERSION"));

/// Who pushes: the labels Remote-Write adds to every series (`job`, `instance`), and the
/// resource attributes of OTLP (`service.name`, `service.instance.id`, the user's).
#[derive(Clone, Debug, Default)]
pub(crate) struct Identity {
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) resource: Vec<(String, String)>,
}

/// What to do after an answer.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Done,
    /// Try again within the interval, not before the receiver's `Retry-After`, if any.
    Retry(Reason, Option<Duration>),
    /// Give up on this push (the next one carries its values).
    Drop(Reason),
    /// Send again at once, encoded anew (Remote-Write 2.0 refused: now 1.0).
    Resend(Reason),
}

/// One push's body, compressed, with its method and the headers that describe it.
pub(crate) struct Encoded {
    pub(crate) method: Method,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Bytes,
}

/// The Remote-Write version a target speaks.
#[cfg(feature = "remote-write")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    V2,
    V1,
}

/// One target's protocol state and buffers; see the module documentation.
pub(crate) struct Wire {
    protocol: Protocol,
    /// The last body, uncompressed, and compressed: their room is reused (a request takes
    /// a copy of the compressed one, a fraction of the size).
    body: Vec<u8>,
    compressed: Vec<u8>,
    #[cfg(feature = "remote-write")]
    snappy: snap::raw::Encoder,
    #[cfg(feature = "otlp")]
    otlp: crate::encode::otlp::Buffers,
    #[cfg(feature = "remote-write")]
    symbols: crate::encode::remote_write::Symbols,
    #[cfg(feature = "remote-write")]
    pub(crate) version: Version,
    /// What the last Remote-Write 2.0 body held: samples, histograms, exemplars.
    #[cfg(feature = "remote-write")]
    sent: [u64; 3],
    /// The timestamp (ms) of the last Remote-Write body.
    #[cfg(feature = "remote-write")]
    last_ms: i64,
    /// The exemplars not pushed yet are those recorded from this time on (seconds since
    /// the Unix epoch), and the last body carried those until `window.to`.
    #[cfg(any(feature = "otlp", feature = "remote-write"))]
    window: crate::encode::Window,
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Wire {
    pub(crate) fn new(target: &PushTarget) -> Self {
        let protocol = target.protocol;
        Self {
            protocol,
            body: Vec::new(),
            compressed: Vec::new(),
            #[cfg(feature = "remote-write")]
            snappy: snap::raw::Encoder::new(),
            #[cfg(feature = "otlp")]
            otlp: Default::default(),
            #[cfg(feature = "remote-write")]
            symbols: Default::default(),
            #[cfg(feature = "remote-write")]
            version: if target.v1 { Version::V1 } else { Version::V2 },
            #[cfg(feature = "remote-write")]
            sent: [0; 3],
            #[cfg(feature = "remote-write")]
            last_ms: 0,
            #[cfg(any(feature = "otlp", feature = "remote-write"))]
            window: crate::encode::Window {
                from: f64::NEG_INFINITY,
                to: f64::NEG_INFINITY,
            },
        }
    }

    /// The request of one push of what `source` holds now.
    pub(crate) fn request(
        &mut self,
        target: &PushTarget,
        source: &Source,
        identity: &Identity,
    ) -> Result<Request<Full<Bytes>>, PushError> {
        let encoded = self.encode(source, identity)?;
        let mut request = Request::builder()
            .method(encoded.method)
            .uri(target.uri.clone())
            .header(USER_AGENT, AGENT);
        for (name, value) in encoded.headers {
            request = request.header(name, value);
        }
        let mut request = request
            .body(Full::new(encoded.body))
            .map_err(|e| PushError::Request(e.into()))?;
        for (name, value) in &target.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        Ok(request)
    }

    /// The body of one push of what `source` holds now, compressed as the protocol wants,
    /// with its method and the headers that describe it.
    pub(crate) fn encode(
        &mut self,
        source: &Source,
        identity: &Identity,
    ) -> Result<Encoded, PushError> {
        Ok(match self.protocol {
            Protocol::Pushgateway => {
                // `PUT` replaces the job's group; names stay legacy (underscores).
                let negotiated = Negotiated::of(Format::Text);
                Encoded {
                    method: Method::PUT,
                    headers: vec![(CONTENT_TYPE.as_str(), negotiated.content_type())],
                    body: source.render(negotiated).into(),
                }
            }
            #[cfg(feature = "otlp")]
            Protocol::Otlp => {
                let now = now();
                self.window.to = now.as_secs_f64();
                let start = source.epoch_ms().saturating_mul(1_000_000);
                let mut encoder = crate::encode::otlp::Otlp::new(
                    &mut self.body,
                    &mut self.otlp,
                    &identity.resource,
                    now.as_nanos() as u64,
                    start,
                    self.window,
                );
                source.encode(crate::encode::Escaping::AllowUtf8, &mut encoder);
                Encoded {
                    method: Method::POST,
                    headers: vec![
                        (CONTENT_TYPE.as_str(), "application/x-protobuf".to_owned()),
                        (CONTENT_ENCODING.as_str(), "gzip".to_owned()),
                    ],
                    body: gzip(&self.body, &mut self.compressed)?,
                }
            }
            #[cfg(feature = "remote-write")]
            Protocol::RemoteWrite => {
                use crate::encode::remote_write::{
                    v1::RemoteWriteV1, RemoteWriteV2, CONTENT_TYPE as V2,
                };
                let now = now();
                self.window.to = now.as_secs_f64();
                // Strictly later than the last push's: two pushes within one millisecond
                // (a final push right after a periodic one, a retry of a push the receiver
                // took) would give a self-metric two values at one timestamp, which
                // Prometheus refuses as a duplicate sample.
                let now = (now.as_millis() as i64).max(self.last_ms + 1);
                self.last_ms = now;
                let window = self.window;
                let (content_type, version) = match self.version {
                    Version::V2 => {
                        let mut encoder = RemoteWriteV2::new(
                            &mut self.body,
                            &mut self.symbols,
                            &identity.labels,
                            now,
                            window,
                        );
                        source.encode(crate::encode::Escaping::AllowUtf8, &mut encoder);
                        self.sent = encoder.written;
                        (V2, "2.0.0")
                    }
                    Version::V1 => {
                        let mut encoder =
                            RemoteWriteV1::new(&mut self.body, &identity.labels, now, window);
                        source.encode(crate::encode::Escaping::Underscores, &mut encoder);
                        ("application/x-protobuf", "0.1.0")
                    }
                };
                Encoded {
                    method: Method::POST,
                    headers: vec![
                        (CONTENT_TYPE.as_str(), content_type.to_owned()),
                        (CONTENT_ENCODING.as_str(), "snappy".to_owned()),
                        ("x-prometheus-remote-write-version", version.to_owned()),
                    ],
                    body: self.snappy()?,
                }
            }
        })
    }

    /// The body snappy-compressed (the block format Remote-Write asks for).
    #[cfg(feature = "remote-write")]
    fn snappy(&mut self) -> Result<Bytes, PushError> {
        self.compressed
            .resize(snap::raw::max_compress_len(self.body.len()), 0);
        let written = self
            .snappy
            .compress(&self.body, &mut self.compressed)
            .map_err(|e| PushError::Request(e.into()))?;
        Ok(Bytes::copy_from_slice(&self.compressed[..written]))
    }

    /// The verdict on `answer`. A push the receiver took, even in part, moves the exemplar
    /// window on; one it may not have (retried, refused as a whole) does not.
    pub(crate) fn judge(&mut self, answer: &Answer) -> Verdict {
        let verdict = self.verdict(answer);
        #[cfg(any(feature = "otlp", feature = "remote-write"))]
        if matches!(verdict, Verdict::Done | Verdict::Drop(_)) {
            self.window.from = self.window.to;
        }
        verdict
    }

    fn verdict(&mut self, answer: &Answer) -> Verdict {
        let status = answer.status;
        let retry_after = || {
            answer
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
        };
        if status.is_success() {
            return self.judge_success(answer);
        }
        #[cfg(feature = "remote-write")]
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE && self.falls_back() {
            return Verdict::Resend(Reason::Unsupported);
        }
        let transient = match self.protocol {
            // OTLP/HTTP calls only these transient.
            #[cfg(feature = "otlp")]
            Protocol::Otlp => matches!(status.as_u16(), 502..=504),
            _ => status.is_server_error(),
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            Verdict::Retry(Reason::Throttled, retry_after())
        } else if transient {
            Verdict::Retry(Reason::ServerError, retry_after())
        } else {
            Verdict::Drop(Reason::Rejected)
        }
    }

    fn judge_success(&mut self, answer: &Answer) -> Verdict {
        match self.protocol {
            #[cfg(feature = "otlp")]
            Protocol::Otlp => match crate::encode::otlp::rejected(&answer.body) {
                Some(_) => Verdict::Drop(Reason::Partial),
                None => Verdict::Done,
            },
            #[cfg(feature = "remote-write")]
            Protocol::RemoteWrite if self.version == Version::V2 => {
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
                if counts.iter().all(Option::is_none) {
                    // A 1.0 receiver took the body as an empty 1.0 request.
                    self.falls_back();
                    return Verdict::Resend(Reason::Unsupported);
                }
                // Exemplars may be refused (exemplar storage off) without losing a sample.
                let short = counts[..2]
                    .iter()
                    .zip(&self.sent[..2])
                    .any(|(got, sent)| got.is_some_and(|got| got < *sent));
                if short {
                    Verdict::Drop(Reason::Partial)
                } else {
                    Verdict::Done
                }
            }
            _ => Verdict::Done,
        }
    }

    /// Switches a Remote-Write 2.0 target to 1.0; whether it did.
    #[cfg(feature = "remote-write")]
    fn falls_back(&mut self) -> bool {
        let switch = self.protocol == Protocol::RemoteWrite && self.version == Version::V2;
        if switch {
            self.version = Version::V1;
        }
        switch
    }
}

/// The reason of a request that got no answer.
pub(crate) fn reason(error: &PushError) -> Reason {
    match error {
        PushError::Timeout(_) => Reason::Timeout,
        _ => Reason::Connection,
    }
}

#[cfg(feature = "otlp")]
/// `body` gzipped (fast, as the listener gzips a scrape), through `room`.
fn gzip(body: &[u8], room: &mut Vec<u8>) -> Result<Bytes, PushError> {
    use std::io::Write;
    room.clear();
    let mut encoder = flate2::write::GzEncoder::new(room, flate2::Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .map(|room| Bytes::copy_from_slice(room))
        .map_err(|e| PushError::Request(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;
    use hyper::HeaderMap;

    fn target(protocol: Protocol) -> PushTarget {
        let url = "http://127.0.0.1:1/";
        let target = PushTarget::pushgateway(url).expect("valid");
        PushTarget { protocol, ..target }
    }

    fn answer(status: u16, headers: &[(&'static str, &str)]) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).expect("valid"));
        }
        Answer {
            status: StatusCode::from_u16(status).expect("valid"),
            headers: map,
            body: Bytes::new(),
        }
    }

    #[test]
    fn answers_are_judged_as_the_specifications_say() {
        let mut wire = Wire::new(&target(Protocol::Pushgateway));
        assert_eq!(wire.judge(&answer(202, &[])), Verdict::Done);
        assert_eq!(
            wire.judge(&answer(429, &[("retry-after", "3")])),
            Verdict::Retry(Reason::Throttled, Some(Duration::from_secs(3)))
        );
        assert_eq!(
            wire.judge(&answer(
                500,
                &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]
            )),
            Verdict::Retry(Reason::ServerError, None)
        );
        assert_eq!(
            wire.judge(&answer(400, &[])),
            Verdict::Drop(Reason::Rejected)
        );
        assert_eq!(
            wire.judge(&answer(415, &[])),
            Verdict::Drop(Reason::Rejected)
        );
        assert_eq!(
            wire.judge(&answer(302, &[])),
            Verdict::Drop(Reason::Rejected)
        );
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn otlp_retries_only_its_transient_statuses() {
        let mut wire = Wire::new(&target(Protocol::Otlp));
        assert_eq!(
            wire.judge(&answer(500, &[])),
            Verdict::Drop(Reason::Rejected)
        );
        assert!(matches!(wire.judge(&answer(503, &[])), Verdict::Retry(..)));
        assert_eq!(wire.judge(&answer(200, &[])), Verdict::Done);
    }

    #[cfg(all(feature = "remote-write", feature = "testing"))]
    #[test]
    fn remote_write_bodies_back_to_back_never_share_a_timestamp() {
        use crate::encode::remote_write::Request;
        use crate::Collector;
        use prost::Message;

        let recorder = crate::Builder::new().build_local();
        recorder.collector().increment_counter("jobs_total", &[]);
        let target = PushTarget::remote_write("http://127.0.0.1:1/api/v1/write").expect("valid");
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

    #[cfg(feature = "remote-write")]
    #[test]
    fn remote_write_falls_back_to_1_0_once_and_for_good() {
        let mut wire = Wire::new(&target(Protocol::RemoteWrite));
        wire.sent = [3, 0, 0];
        let written = [
            ("x-prometheus-remote-write-samples-written", "3"),
            ("x-prometheus-remote-write-histograms-written", "0"),
        ];
        assert_eq!(wire.judge(&answer(204, &written)), Verdict::Done);
        let short = [("x-prometheus-remote-write-samples-written", "2")];
        assert_eq!(
            wire.judge(&answer(204, &short)),
            Verdict::Drop(Reason::Partial)
        );
        assert_eq!(wire.version, Version::V2);
        // A success without the headers is a 1.0 receiver.
        assert_eq!(
            wire.judge(&answer(204, &[])),
            Verdict::Resend(Reason::Unsupported)
        );
        assert_eq!(wire.version, Version::V1);
        assert_eq!(wire.judge(&answer(204, &[])), Verdict::Done);
        assert_eq!(
            wire.judge(&answer(415, &[])),
            Verdict::Drop(Reason::Rejected)
        );
        let mut refused = Wire::new(&target(Protocol::RemoteWrite));
        assert_eq!(
            refused.judge(&answer(415, &[])),
            Verdict::Resend(Reason::Unsupported)
        );
        assert_eq!(refused.version, Version::V1);
    }
}
