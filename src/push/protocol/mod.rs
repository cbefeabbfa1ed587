//! What each protocol sends and how it reads the answers ([`Exchange`]): one push encoded
//! into requests (bodies compressed from buffers kept from push to push), and the verdict
//! on each request's answer: done, retry, drop, or fall back (send again, encoded as the
//! receiver takes it). The rules every protocol shares are here: which statuses are
//! retried, `Retry-After`, a receiver refusing native histograms or UTF-8 names.

#[cfg(feature = "otlp")]
pub(crate) mod otlp;
pub(crate) mod pushgateway;
#[cfg(feature = "remote-write")]
pub(crate) mod remote_write;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::body::Bytes;
use hyper::header::RETRY_AFTER;
use hyper::{HeaderMap, Method, StatusCode};

use super::client::Answer;
use super::identity::Identity;
pub(crate) use super::outcome::{Fallback, Reason};
use super::target::Batching;
#[cfg(any(feature = "otlp", feature = "remote-write"))]
use crate::encode::batch::Marks;
use crate::pipeline::Source;
use crate::PushError;

/// One protocol; see the module documentation.
pub(crate) trait Exchange: Send + Sync + 'static {
    /// The room its encoding works in, kept from push to push.
    type Room: Default + Send + 'static;
    /// What a request carried, for its answer to be judged.
    type Sent: Send + 'static;

    /// Encodes one push into requests of at most `job.batching`'s size, handing each to
    /// `send` as soon as it is cut (which blocks while the sender's queue is full, and
    /// says `false` once nobody sends them any more).
    fn encode(
        &self,
        room: &mut Self::Room,
        job: &Job,
        send: &mut dyn FnMut(Request<Self::Sent>) -> bool,
    ) -> Result<(), PushError>;

    /// The verdict on the answer to one of its requests.
    fn judge(&self, answer: &Answer, sent: &Self::Sent) -> Verdict;
}

/// What one push sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum What {
    /// Every series' value; then stale markers for the series idle expiry hid.
    Values,
    /// Stale markers for every series (after the final push at `stop()`).
    Ended,
}

/// One push, as its encoding sees it.
#[cfg_attr(
    not(any(feature = "otlp", feature = "remote-write")),
    expect(dead_code, reason = "the Pushgateway alone reads only the store")
)]
pub(crate) struct Job {
    pub(crate) source: Source,
    pub(crate) identity: Arc<Identity>,
    pub(crate) learnt: Learnt,
    pub(crate) what: What,
    /// The push's timestamp, in ms since the Unix epoch: later than the last push's.
    pub(crate) stamp_ms: i64,
    /// The exemplars this push carries are those recorded from this time on (seconds since
    /// the Unix epoch) until its timestamp.
    pub(crate) exemplars_from: f64,
    pub(crate) batching: Batching,
}

#[cfg(any(feature = "otlp", feature = "remote-write"))]
impl Job {
    /// The exemplars this push carries: those recorded since the last push the receiver
    /// answered in full, until its timestamp.
    pub(crate) fn window(&self) -> crate::encode::Window {
        crate::encode::Window {
            from: self.exemplars_from,
            to: self.stamp_ms as f64 / 1000.0,
        }
    }

    /// How large a request may grow.
    pub(crate) fn limits(&self) -> crate::encode::batch::Limits {
        crate::encode::batch::Limits {
            samples: self.batching.samples,
            bytes: self.batching.bytes,
        }
    }
}

/// One request: its method, the headers that describe its body, its body (compressed),
/// and what it carried.
pub(crate) struct Request<T> {
    pub(crate) method: Method,
    pub(crate) headers: &'static [(&'static str, &'static str)],
    pub(crate) body: Bytes,
    pub(crate) sent: T,
}

/// The fallbacks a target took, kept for its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Learnt([bool; 3]);

impl Learnt {
    /// Whether `fallback` was taken.
    pub(crate) fn has(&self, fallback: Fallback) -> bool {
        self.0[fallback.at()]
    }

    /// Takes `fallback`; whether it is new.
    pub(crate) fn learn(&mut self, fallback: Fallback) -> bool {
        let new = !self.has(fallback);
        self.0[fallback.at()] = true;
        new
    }
}

/// What to do after an answer.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Done,
    /// Try again within the interval, not before the receiver's `Retry-After`, if any.
    Retry(Reason, Option<Duration>),
    /// Give up on this request (the next push carries its values, cumulative).
    Drop(Reason),
    /// Learn this, and send the push again at once, encoded so.
    #[cfg_attr(
        not(any(feature = "otlp", feature = "remote-write")),
        expect(dead_code, reason = "the Pushgateway takes what it is sent or not")
    )]
    Fallback(Fallback),
}

/// The verdict on an answer that is not a success, by the rules every protocol shares:
/// `429` and the statuses `transient` calls so are retried (after `Retry-After`, if the
/// receiver says), any other is dropped.
pub(crate) fn refusal(answer: &Answer, transient: impl Fn(StatusCode) -> bool) -> Verdict {
    let after = retry_after(&answer.headers, SystemTime::now());
    if answer.status == StatusCode::TOO_MANY_REQUESTS {
        Verdict::Retry(Reason::Throttled, after)
    } else if transient(answer.status) {
        Verdict::Retry(Reason::ServerError, after)
    } else {
        Verdict::Drop(Reason::Rejected)
    }
}

/// Whether the receiver refused native histograms: Prometheus without
/// `--enable-feature=native-histograms` answers so, and rolls the whole request back.
#[cfg(any(feature = "otlp", feature = "remote-write"))]
pub(crate) fn refuses_native(answer: &Answer) -> bool {
    !answer.status.is_success() && contains(&answer.body, "native histograms are disabled")
}

/// Whether `text`, read as ASCII case-insensitively, holds `needle` (lowercase).
#[cfg(any(feature = "otlp", feature = "remote-write"))]
pub(crate) fn contains(text: &[u8], needle: &str) -> bool {
    text.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The receiver's `Retry-After`, in either form: seconds, or an HTTP date (how long from
/// `now`; a date past is no wait).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

/// Walks the store into `encoder` as `job` says: every value, then stale markers (1 ms
/// later) for the series idle expiry hid; or, for [`What::Ended`], stale markers for all.
#[cfg(any(feature = "otlp", feature = "remote-write"))]
pub(crate) fn walk(job: &Job, escaping: crate::encode::Escaping, encoder: &mut impl Marks) {
    if job.what == What::Ended {
        encoder.stale_from(job.stamp_ms);
    }
    job.source.encode(escaping, encoder);
    if job.what == What::Values {
        encoder.stale_from(job.stamp_ms + 1);
    }
    job.source.encode_hidden(escaping, encoder);
}

/// The reason of a request that got no answer.
pub(crate) fn reason(error: &PushError) -> Reason {
    match error {
        PushError::Timeout(_) => Reason::Timeout,
        _ => Reason::Connection,
    }
}

#[cfg(test)]
mod tests;
