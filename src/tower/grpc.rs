//! gRPC's vocabulary: method types, status codes, each side's series (names and HELP
//! texts), and what only a client sees.
//!
//! The same [`Call`](super::call::Call) watches both sides: on the server the request body
//! carries the messages received and the response body the messages sent; on the client it
//! is the other way round. What only a client sees:
//!
//! * a transport error before any response (connection refused, reset, ...) is
//!   `Unavailable`, as gRPC clients report it;
//! * a call dropped before its end (the caller cancelled: a `select!`, a dropped stream) is
//!   `Canceled`;
//! * either of them past the deadline the call carried (`grpc-timeout`, which tonic's
//!   `Request::set_timeout` and `Endpoint::timeout` set) is `DeadlineExceeded`.

use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};

/// The kind of a gRPC method, as go-grpc-middleware labels it (`grpc_type`).
///
/// ```
/// use porter_metrics::tower::GrpcType;
/// assert_eq!(GrpcType::ServerStream.as_str(), "server_stream");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrpcType {
    /// One request, one response.
    Unary,
    /// A stream of requests, one response.
    ClientStream,
    /// One request, a stream of responses.
    ServerStream,
    /// Streams both ways.
    BidiStream,
    /// The layer cannot tell (no [`MetricsLayer::grpc_types`](super::MetricsLayer::grpc_types),
    /// or a method the server does not serve).
    Unknown,
}

impl GrpcType {
    /// The label value.
    ///
    /// ```
    /// assert_eq!(porter_metrics::tower::GrpcType::Unary.as_str(), "unary");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcType::Unary => "unary",
            GrpcType::ClientStream => "client_stream",
            GrpcType::ServerStream => "server_stream",
            GrpcType::BidiStream => "bidi_stream",
            GrpcType::Unknown => "unknown",
        }
    }
}

/// A gRPC status code (the protocol's numbers), labelled as the Go provider spells it
/// (`codes.Code.String()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GrpcCode {
    Ok = 0,
    Canceled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// Every code, in the protocol's order (a code's number is its index).
    const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Canceled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The `grpc_code` label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GrpcCode::Ok => "OK",
            GrpcCode::Canceled => "Canceled",
            GrpcCode::Unknown => "Unknown",
            GrpcCode::InvalidArgument => "InvalidArgument",
            GrpcCode::DeadlineExceeded => "DeadlineExceeded",
            GrpcCode::NotFound => "NotFound",
            GrpcCode::AlreadyExists => "AlreadyExists",
            GrpcCode::PermissionDenied => "PermissionDenied",
            GrpcCode::ResourceExhausted => "ResourceExhausted",
            GrpcCode::FailedPrecondition => "FailedPrecondition",
            GrpcCode::Aborted => "Aborted",
            GrpcCode::OutOfRange => "OutOfRange",
            GrpcCode::Unimplemented => "Unimplemented",
            GrpcCode::Internal => "Internal",
            GrpcCode::Unavailable => "Unavailable",
            GrpcCode::DataLoss => "DataLoss",
            GrpcCode::Unauthenticated => "Unauthenticated",
        }
    }

    /// The code of a `grpc-status` header; a missing one is `None`, a garbled one
    /// `Unknown`.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get("grpc-status")?;
        Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .and_then(|n| Self::ALL.get(n).copied())
                .unwrap_or(GrpcCode::Unknown),
        )
    }

    /// The code of an HTTP error answered before any gRPC response (gRPC's "HTTP to gRPC
    /// status code mapping").
    pub(crate) fn of_http(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => GrpcCode::Internal,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 => GrpcCode::Unimplemented,
            429 | 502..=504 => GrpcCode::Unavailable,
            _ => GrpcCode::Unknown,
        }
    }
}

/// Which side of a call a gRPC layer watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

/// One series: its name and its HELP text.
pub(crate) type Series = (&'static str, &'static str);

/// The series one side records: go-grpc-middleware's names, with HELP texts saying when
/// each is counted (the layer's meaning, which is the middleware's).
pub(crate) struct Names {
    pub(crate) started: Series,
    pub(crate) handled: Series,
    /// Messages in the request body: received by a server, sent by a client.
    pub(crate) request_messages: Series,
    /// Messages in the response body: sent by a server, received by a client.
    pub(crate) response_messages: Series,
    pub(crate) seconds: Series,
}

const SERVER: Names = Names {
    started: (
        "grpc_server_started_total",
        "gRPC calls the server began, once each: counted when the call arrives, or at its response head for a method not yet seen served.",
    ),
    handled: (
        "grpc_server_handled_total",
        "gRPC calls the server finished, once each, by the status code they ended with (Canceled when the client went away).",
    ),
    request_messages: (
        "grpc_server_msg_received_total",
        "Messages the server read from gRPC request streams (one per message for unary calls too).",
    ),
    response_messages: (
        "grpc_server_msg_sent_total",
        "Messages the server wrote to gRPC response streams (one per message for unary calls too).",
    ),
    seconds: (
        "grpc_server_handling_seconds",
        "Seconds from a gRPC call's arrival at the server to its end (the last frame of its response, or the client going away).",
    ),
};

const CLIENT: Names = Names {
    started: (
        "grpc_client_started_total",
        "gRPC calls the client began, once each, counted when the request is sent.",
    ),
    handled: (
        "grpc_client_handled_total",
        "gRPC calls the client finished, once each, by the status code it saw (Unavailable for a transport failure, DeadlineExceeded past its deadline).",
    ),
    request_messages: (
        "grpc_client_msg_sent_total",
        "Messages the client wrote to gRPC request streams (one per message for unary calls too).",
    ),
    response_messages: (
        "grpc_client_msg_received_total",
        "Messages the client read from gRPC response streams (one per message for unary calls too).",
    ),
    seconds: (
        "grpc_client_handling_seconds",
        "Seconds from a gRPC call's start on the client to its end (the last frame of its response, or the caller dropping it).",
    ),
};

impl Side {
    pub(crate) fn names(self) -> &'static Names {
        match self {
            Side::Server => &SERVER,
            Side::Client => &CLIENT,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Side::Server => "grpc",
            Side::Client => "grpc_client",
        }
    }

    /// The deadline of a call that starts `now` with these request headers (client only:
    /// a server has the client's deadline handled by its framework).
    pub(crate) fn deadline(self, headers: &HeaderMap, now: Instant) -> Option<Instant> {
        match self {
            Side::Server => None,
            Side::Client => now.checked_add(grpc_timeout(headers)?),
        }
    }

    /// The code of a call that the caller dropped before its end.
    pub(crate) fn canceled(self, deadline: Option<Instant>) -> GrpcCode {
        past(deadline).unwrap_or(GrpcCode::Canceled)
    }

    /// The code of a call that failed without a gRPC status: on a client, the transport
    /// failed (`Unavailable`); on a server, `otherwise`.
    pub(crate) fn transport_failed(
        self,
        deadline: Option<Instant>,
        otherwise: GrpcCode,
    ) -> GrpcCode {
        match self {
            Side::Server => otherwise,
            Side::Client => past(deadline).unwrap_or(GrpcCode::Unavailable),
        }
    }
}

/// `DeadlineExceeded` if `deadline` has passed.
fn past(deadline: Option<Instant>) -> Option<GrpcCode> {
    deadline
        .filter(|d| Instant::now() >= *d)
        .map(|_| GrpcCode::DeadlineExceeded)
}

/// The `grpc-timeout` header: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`),
/// as the gRPC HTTP/2 protocol spells it. Anything else is no timeout.
pub(crate) fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `/package.Service/Method` → (`package.Service`, `Method`); anything else keeps what it
/// has, with `unknown` for a missing part.
pub(crate) fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    match trimmed.rsplit_once('/') {
        Some((service, method)) if !service.is_empty() && !method.is_empty() => (service, method),
        _ if !trimmed.is_empty() => (trimmed, "unknown"),
        _ => ("unknown", "unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_read_as_the_protocol_spells_them() {
        let timeout = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().unwrap());
            grpc_timeout(&headers)
        };
        assert_eq!(timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "1", "1x", "-1S", "123456789S", "1.5S"] {
            assert_eq!(timeout(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn client_failures_are_unavailable_canceled_or_past_the_deadline() {
        let now = Instant::now();
        let passed = Some(now);
        let later = now.checked_add(Duration::from_secs(3600));
        let other = GrpcCode::Unknown;
        assert_eq!(
            Side::Client.transport_failed(None, other),
            GrpcCode::Unavailable
        );
        assert_eq!(
            Side::Client.transport_failed(later, other),
            GrpcCode::Unavailable
        );
        assert_eq!(
            Side::Client.transport_failed(passed, other),
            GrpcCode::DeadlineExceeded
        );
        assert_eq!(Side::Server.transport_failed(passed, other), other);
        assert_eq!(Side::Client.canceled(later), GrpcCode::Canceled);
        assert_eq!(Side::Client.canceled(passed), GrpcCode::DeadlineExceeded);
        assert_eq!(Side::Server.deadline(&HeaderMap::new(), now), None);
    }

    #[test]
    fn codes_and_paths_are_labelled_as_the_peers_do() {
        let mut headers = HeaderMap::new();
        assert_eq!(GrpcCode::of(&headers), None);
        headers.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(
            GrpcCode::of(&headers).map(GrpcCode::as_str),
            Some("NotFound")
        );
        for garbled in ["nope", "99", "-1", "17"] {
            headers.insert("grpc-status", garbled.parse().unwrap());
            assert_eq!(GrpcCode::of(&headers), Some(GrpcCode::Unknown), "{garbled}");
        }
        for (n, code) in GrpcCode::ALL.iter().enumerate() {
            assert_eq!(*code as usize, n, "{code:?} is in the protocol's order");
        }
        assert_eq!(
            GrpcCode::of_http(StatusCode::NOT_FOUND),
            GrpcCode::Unimplemented
        );
        assert_eq!(
            GrpcCode::of_http(StatusCode::SERVICE_UNAVAILABLE),
            GrpcCode::Unavailable
        );
        assert_eq!(split_path("/pkg.Svc/Do"), ("pkg.Svc", "Do"));
        assert_eq!(split_path("/garbled"), ("garbled", "unknown"));
        assert_eq!(split_path("/"), ("unknown", "unknown"));
    }
}
