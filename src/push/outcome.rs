//! What can become of a push request, in the words of the push self-metrics: why an
//! attempt failed ([`Reason`]), what a receiver taught a target ([`Fallback`]).

/// Why a push attempt failed: the `reason` label of `porter_metrics_push_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// No answer within the target's timeout (retried within the interval).
    Timeout,
    /// The request could not be sent: connection refused, reset, TLS (retried).
    Connection,
    /// `429 Too Many Requests` (retried, after `Retry-After` if it says).
    Throttled,
    /// A `5xx` the protocol calls transient (retried).
    ServerError,
    /// Any other answer that is not a success: the push is dropped (the next one carries
    /// its values, cumulative).
    Rejected,
    /// A success that kept only part of the push (OTLP partial success, fewer samples
    /// written than sent).
    Partial,
    /// The receiver did not take what was sent as encoded (a Remote-Write 1.0 receiver
    /// answered a 2.0 request, native histograms or UTF-8 names were refused): sent again
    /// as it takes them, and so from then on (`porter_metrics_push_fallbacks_total` says
    /// which).
    Unsupported,
}

impl Reason {
    pub(crate) const ALL: [Reason; 7] = [
        Reason::Timeout,
        Reason::Connection,
        Reason::Throttled,
        Reason::ServerError,
        Reason::Rejected,
        Reason::Partial,
        Reason::Unsupported,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Connection => "connection",
            Reason::Throttled => "throttled",
            Reason::ServerError => "server_error",
            Reason::Rejected => "rejected",
            Reason::Partial => "partial",
            Reason::Unsupported => "unsupported",
        }
    }
}

/// What a receiver made a target learn: how to encode for it from then on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// A Remote-Write 1.0 receiver: 1.0 requests.
    RemoteWriteV1,
    /// A receiver that validates legacy names: names and keys escaped (underscores).
    EscapedNames,
    /// A receiver that refused native histograms: their classic buckets only.
    ClassicHistograms,
}

impl Fallback {
    pub(crate) const ALL: [Fallback; 3] = [
        Fallback::RemoteWriteV1,
        Fallback::EscapedNames,
        Fallback::ClassicHistograms,
    ];

    /// The `reason` label of `porter_metrics_push_fallbacks_total`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Fallback::RemoteWriteV1 => "remote_write_v1",
            Fallback::EscapedNames => "escaped_names",
            Fallback::ClassicHistograms => "classic_histograms",
        }
    }

    /// What is logged, once per target, when it happens.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Fallback::RemoteWriteV1 => {
                "porter-metrics: the receiver does not take Remote-Write 2.0; sending 1.0 from now on"
            }
            Fallback::EscapedNames => {
                "porter-metrics: the receiver refused UTF-8 names; sending escaped names from now on"
            }
            Fallback::ClassicHistograms => {
                "porter-metrics: the receiver refused native histograms; sending their classic buckets from now on"
            }
        }
    }

    pub(crate) fn at(self) -> usize {
        self as usize
    }
}
