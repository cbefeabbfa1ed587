//! The client side of the gRPC metrics: [`MetricsLayer::grpc_client`], the names of each
//! side's series, the deadline a client sets, and the codes of a client call that fails
//! without a gRPC status.
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

use http::HeaderMap;

/// `Canceled`, an index into the Go names.
pub(crate) const CANCELED: usize = 1;
/// `DeadlineExceeded`, an index into the Go names.
const DEADLINE_EXCEEDED: usize = 4;
/// `Unavailable`, an index into the Go names.
const UNAVAILABLE: usize = 14;

/// Which side of a call a gRPC layer watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

/// The series one side records, go-grpc-middleware's names.
pub(crate) struct Names {
    pub(crate) started: &'static str,
    pub(crate) handled: &'static str,
    /// Messages in the request body: received by a server, sent by a client.
    pub(crate) request_messages: &'static str,
    /// Messages in the response body: sent by a server, received by a client.
    pub(crate) response_messages: &'static str,
    pub(crate) seconds: &'static str,
}

const SERVER: Names = Names {
    started: "grpc_server_started_total",
    handled: "grpc_server_handled_total",
    request_messages: "grpc_server_msg_received_total",
    response_messages: "grpc_server_msg_sent_total",
    seconds: "grpc_server_handling_seconds",
};

const CLIENT: Names = Names {
    started: "grpc_client_started_total",
    handled: "grpc_client_handled_total",
    request_messages: "grpc_client_msg_sent_total",
    response_messages: "grpc_client_msg_received_total",
    seconds: "grpc_client_handling_seconds",
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
    pub(crate) fn canceled(self, deadline: Option<Instant>) -> usize {
        past(deadline).unwrap_or(CANCELED)
    }

    /// The code of a call that failed without a gRPC status: on a client, the transport
    /// failed (`Unavailable`); on a server, `otherwise`.
    pub(crate) fn transport_failed(self, deadline: Option<Instant>, otherwise: usize) -> usize {
        match self {
            Side::Server => otherwise,
            Side::Client => past(deadline).unwrap_or(UNAVAILABLE),
        }
    }
}

/// `DeadlineExceeded` if `deadline` has passed.
fn past(deadline: Option<Instant>) -> Option<usize> {
    deadline
        .filter(|d| Instant::now() >= *d)
        .map(|_| DEADLINE_EXCEEDED)
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
        assert_eq!(Side::Client.transport_failed(None, 2), UNAVAILABLE);
        assert_eq!(Side::Client.transport_failed(later, 2), UNAVAILABLE);
        assert_eq!(Side::Client.transport_failed(passed, 2), DEADLINE_EXCEEDED);
        assert_eq!(Side::Server.transport_failed(passed, 2), 2);
        assert_eq!(Side::Client.canceled(later), CANCELED);
        assert_eq!(Side::Client.canceled(passed), DEADLINE_EXCEEDED);
        assert_eq!(Side::Server.deadline(&HeaderMap::new(), now), None);
    }
}
