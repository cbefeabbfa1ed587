//! One request's recording: its label values, when it started, and what ends it.
//!
//! A [`Call`] is shared (in an `Arc`) by the request body, which counts the messages the
//! client sends, and the response body, which counts the messages the server sends and
//! records the end: from the trailers' `grpc-status`, from a trailers-only response's
//! `grpc-status`, from the HTTP status a router answered with, or `Canceled` when the body
//! is dropped before its end. The end is recorded once, whichever comes first.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, Method, StatusCode};

use super::client::{Names, Side, CANCELED};
use super::methods::Methods;
use super::trace::{Trace, Traces};
use crate::collector::Collector;

/// OpenTelemetry's HTTP server metrics, as Prometheus renders their names.
pub(crate) const HTTP_SECONDS: &str = "http_server_request_duration_seconds";
pub(crate) const HTTP_ACTIVE: &str = "http_server_active_requests";

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
    /// The layer cannot tell (no [`MetricsLayer::grpc_types`](super::MetricsLayer::grpc_types)).
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

/// gRPC status codes as the Go provider spells them (`codes.Code.String()`).
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const UNKNOWN: usize = 2;

/// The code of a `grpc-status` value; a missing or garbled one is `Unknown`.
pub(crate) fn grpc_code(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|code| *code < CODES.len())
            .unwrap_or(UNKNOWN),
    )
}

/// The gRPC code of an HTTP error answered before any gRPC response (gRPC's
/// "HTTP to gRPC status code mapping").
fn code_of_http(status: StatusCode) -> usize {
    match status.as_u16() {
        400 => 13,             // Internal
        401 => 16,             // Unauthenticated
        403 => 7,              // PermissionDenied
        404 => 12,             // Unimplemented
        429 | 502..=504 => 14, // Unavailable
        _ => UNKNOWN,
    }
}

/// OpenTelemetry's known HTTP methods; any other is `_OTHER`, so a client cannot explode
/// the label's cardinality.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// The route label of a request the route function did not match.
pub(crate) const UNMATCHED: &str = "unmatched";

/// Counts length-prefixed gRPC messages in a byte stream, without copying it: each message
/// is a 1-byte flag, a 4-byte big-endian length, then that many bytes.
#[derive(Default)]
pub(crate) struct Frames {
    header: [u8; 5],
    have: usize,
    remaining: u64,
}

impl Frames {
    /// Feeds the next bytes; returns how many messages started in them.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut started = 0;
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let skip = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.remaining -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (5 - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have == 5 {
                started += 1;
                self.have = 0;
                let [_, a, b, c, d] = self.header;
                self.remaining = u64::from(u32::from_be_bytes([a, b, c, d]));
            }
        }
        started
    }
}

/// Tells a gRPC method's type from its service and method names.
pub(crate) type TypeOf = Arc<dyn Fn(&str, &str) -> GrpcType + Send + Sync>;
/// Finds an HTTP request's route template.
pub(crate) type RouteOf = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

/// What the layer records for: gRPC or HTTP, and how it labels a request.
#[derive(Clone)]
pub(crate) enum Protocol {
    Grpc {
        types: Option<TypeOf>,
        /// Server or client: the names of the series, what a failure is.
        side: Side,
        /// The methods that get their own labels.
        methods: Methods,
    },
    Http {
        route: Option<RouteOf>,
    },
}

/// The state shared by a layer and every call it watches.
#[derive(Clone)]
pub(crate) struct Shared<C> {
    pub(crate) collector: C,
    pub(crate) protocol: Protocol,
    pub(crate) traces: Traces,
}

/// What a call is labelled with.
enum Labels {
    Grpc {
        grpc_type: GrpcType,
        /// `/package.Service/Method`; service and method are slices of it.
        path: String,
        /// Whether the method is one the server serves (else `unknown` labels it).
        known: bool,
        side: Side,
        /// The client's deadline (client side only).
        deadline: Option<Instant>,
    },
    Http {
        method: &'static str,
        route: Option<String>,
        status: AtomicI64,
    },
}

/// Messages counted but not yet recorded are flushed at this many, or after this long.
const FLUSH_MESSAGES: u64 = 64;
const FLUSH_AFTER_MS: u64 = 1000;

/// One request being watched; see the module documentation.
pub(crate) struct Call<C: Collector> {
    shared: Arc<Shared<C>>,
    labels: Labels,
    started: Instant,
    ended: AtomicBool,
    /// Messages received and sent, not yet recorded: a call records them in batches, not
    /// with one collector lookup per message.
    pending: [AtomicU64; 2],
    /// When messages were last recorded (ms since `started`).
    flushed_ms: AtomicU64,
    /// The trace id the request carried, for exemplars.
    trace: Trace,
}

/// Which of a call's message counts: the request body's or the response body's.
#[derive(Clone, Copy)]
pub(crate) enum Direction {
    Request = 0,
    Response = 1,
}

impl Direction {
    fn metric(self, names: &Names) -> &'static str {
        match self {
            Direction::Request => names.request_messages,
            Direction::Response => names.response_messages,
        }
    }
}

impl<C: Collector> Call<C> {
    /// Starts watching a request: counts it started (gRPC) or active (HTTP).
    pub(crate) fn start(shared: &Arc<Shared<C>>, parts: &http::request::Parts) -> Self {
        let labels = match &shared.protocol {
            Protocol::Grpc {
                types,
                side,
                methods,
            } => {
                let path = parts.uri.path().to_owned();
                let known = methods.knows(&path);
                let (service, method) = split_path(&path);
                let grpc_type = match (types, known) {
                    (Some(types), true) => types(service, method),
                    _ => GrpcType::Unknown,
                };
                let deadline = side.deadline(&parts.headers, Instant::now());
                Labels::Grpc {
                    grpc_type,
                    path,
                    known,
                    side: *side,
                    deadline,
                }
            }
            Protocol::Http { route, .. } => Labels::Http {
                method: method_label(&parts.method),
                route: route.as_ref().and_then(|route| route(parts)),
                status: AtomicI64::new(0),
            },
        };
        let call = Self {
            shared: shared.clone(),
            labels,
            started: Instant::now(),
            ended: AtomicBool::new(false),
            pending: [AtomicU64::new(0), AtomicU64::new(0)],
            flushed_ms: AtomicU64::new(0),
            trace: Trace::of(&shared.traces, parts),
        };
        call.with_grpc_labels(|names, labels| {
            call.shared
                .collector
                .increment_counter(names.started, labels)
        });
        if let Labels::Http { method, route, .. } = &call.labels {
            let labels = [
                "http_request_method",
                method,
                "http_route",
                route_label(route),
            ];
            call.shared
                .collector
                .add_to_gauge(HTTP_ACTIVE, 1.0, &labels);
        }
        call
    }

    /// Whether messages are counted (gRPC).
    pub(crate) fn counts_messages(&self) -> bool {
        matches!(self.labels, Labels::Grpc { .. })
    }

    /// Runs `f` with the side's names and the call's labels (gRPC).
    fn with_grpc_labels(&self, f: impl FnOnce(&'static Names, &[&str])) {
        if let Labels::Grpc {
            grpc_type,
            path,
            known,
            side,
            ..
        } = &self.labels
        {
            let (service, method) = match known {
                true => split_path(path),
                false => ("unknown", "unknown"),
            };
            f(
                side.names(),
                &[
                    "grpc_type",
                    grpc_type.as_str(),
                    "grpc_service",
                    service,
                    "grpc_method",
                    method,
                ],
            );
        }
    }

    /// Counts `messages` more in `direction`, recording them once enough have waited.
    pub(crate) fn messages(&self, direction: Direction, messages: u64) {
        if messages == 0 {
            return;
        }
        let pending = self.pending[direction as usize].fetch_add(messages, Ordering::Relaxed);
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.flushed_ms.load(Ordering::Relaxed);
        if pending + messages >= FLUSH_MESSAGES || now.saturating_sub(last) >= FLUSH_AFTER_MS {
            self.flushed_ms.store(now, Ordering::Relaxed);
            self.flush(direction);
        }
    }

    /// Records the messages waiting in `direction`.
    fn flush(&self, direction: Direction) {
        let n = self.pending[direction as usize].swap(0, Ordering::AcqRel);
        if n > 0 {
            self.with_grpc_labels(|names, l| {
                self.shared
                    .collector
                    .add_to_counter(direction.metric(names), n, l)
            });
        }
    }

    /// The response's head arrived: for HTTP, its status.
    pub(crate) fn responded(&self, status: StatusCode) {
        if let Labels::Http { status: s, .. } = &self.labels {
            s.store(i64::from(status.as_u16()), Ordering::Relaxed);
        }
    }

    /// Records the end, once: with gRPC `code` (an index into the Go names), or for HTTP
    /// with the status seen.
    fn end(&self, code: usize) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let collector = &self.shared.collector;
        self.flush(Direction::Request);
        self.flush(Direction::Response);
        if let (
            Labels::Grpc {
                path, known: false, ..
            },
            Protocol::Grpc { methods, .. },
        ) = (&self.labels, &self.shared.protocol)
        {
            methods.ended(path, code);
        }
        match &self.labels {
            Labels::Grpc { .. } => self.with_grpc_labels(|names, labels| {
                let [_, t, _, s, _, m] = labels else { return };
                let handled = [
                    "grpc_type",
                    t,
                    "grpc_service",
                    s,
                    "grpc_method",
                    m,
                    "grpc_code",
                    CODES.get(code).copied().unwrap_or("Unknown"),
                ];
                match self.trace.id() {
                    Some(id) => {
                        let exemplar = ["trace_id", id];
                        collector.increment_counter_with_exemplar(
                            names.handled,
                            &handled,
                            &exemplar,
                        );
                        collector.record_histogram_with_exemplar(
                            names.seconds,
                            seconds,
                            labels,
                            &exemplar,
                        );
                    }
                    None => {
                        collector.increment_counter(names.handled, &handled);
                        collector.record_histogram(names.seconds, seconds, labels);
                    }
                }
            }),
            Labels::Http {
                method,
                route,
                status,
            } => {
                let route = route_label(route);
                let status = status.load(Ordering::Relaxed);
                let mut digits = [0u8; 3];
                let status = status_label(status, &mut digits);
                let labels = [
                    "http_request_method",
                    method,
                    "http_route",
                    route,
                    "http_response_status_code",
                    status,
                ];
                match self.trace.id() {
                    Some(id) => collector.record_histogram_with_exemplar(
                        HTTP_SECONDS,
                        seconds,
                        &labels,
                        &["trace_id", id],
                    ),
                    None => collector.record_histogram(HTTP_SECONDS, seconds, &labels),
                }
                let active = ["http_request_method", method, "http_route", route];
                collector.add_to_gauge(HTTP_ACTIVE, -1.0, &active);
            }
        }
    }

    /// The response ended: with the `grpc-status` of its trailers, else of its head (a
    /// trailers-only response), else `Unknown`.
    pub(crate) fn finished(&self, head: Option<usize>, trailers: Option<usize>) {
        self.end(trailers.or(head).unwrap_or(UNKNOWN));
    }

    /// An HTTP error answered before any gRPC response.
    pub(crate) fn failed_with_status(&self, status: StatusCode) {
        self.end(code_of_http(status));
    }

    /// The service failed (no response at all): `Unknown` for a gRPC server,
    /// `Unavailable` (or `DeadlineExceeded`) for a gRPC client, `500` for HTTP.
    pub(crate) fn errored(&self) {
        self.responded(StatusCode::INTERNAL_SERVER_ERROR);
        self.end(match &self.labels {
            Labels::Grpc { side, deadline, .. } => side.transport_failed(*deadline, UNKNOWN),
            Labels::Http { .. } => UNKNOWN,
        });
    }

    /// The response body was dropped before its end: the client went away (or, on a
    /// client, cancelled; past its deadline, `DeadlineExceeded`).
    pub(crate) fn canceled(&self) {
        self.end(match &self.labels {
            Labels::Grpc { side, deadline, .. } => side.canceled(*deadline),
            Labels::Http { .. } => CANCELED,
        });
    }

    /// The response body failed: the stream is cut. `Canceled` on a server; on a client,
    /// the transport failed (`Unavailable`, or `DeadlineExceeded` past the deadline).
    pub(crate) fn broken(&self) {
        self.end(match &self.labels {
            Labels::Grpc { side, deadline, .. } => side.transport_failed(*deadline, CANCELED),
            Labels::Http { .. } => CANCELED,
        });
    }
}

fn route_label(route: &Option<String>) -> &str {
    route.as_deref().unwrap_or(UNMATCHED)
}

/// A status code's three digits, written into `digits` (no allocation).
fn status_label(status: i64, digits: &mut [u8; 3]) -> &str {
    let status = u16::try_from(status).unwrap_or(0).clamp(100, 999);
    for (i, d) in [status / 100, status / 10 % 10, status % 10]
        .into_iter()
        .enumerate()
    {
        digits[i] = b'0' + d as u8;
    }
    std::str::from_utf8(digits).unwrap_or("500")
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
    fn frames_are_counted_across_any_split() {
        let mut stream = Vec::new();
        for len in [0u32, 3, 70_000] {
            stream.push(0);
            stream.extend_from_slice(&len.to_be_bytes());
            stream.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for chunk in [1, 2, 4, 5, 6, 1000, stream.len()] {
            let mut frames = Frames::default();
            let counted: u64 = stream.chunks(chunk).map(|c| frames.feed(c)).sum();
            assert_eq!(counted, 3, "chunks of {chunk}");
        }
    }

    #[test]
    fn codes_paths_methods_and_statuses_are_labelled_as_the_peers_do() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_code(&headers), None);
        headers.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(grpc_code(&headers).map(|c| CODES[c]), Some("NotFound"));
        headers.insert("grpc-status", "nope".parse().unwrap());
        assert_eq!(grpc_code(&headers).map(|c| CODES[c]), Some("Unknown"));
        headers.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(grpc_code(&headers).map(|c| CODES[c]), Some("Unknown"));
        assert_eq!(CODES[code_of_http(StatusCode::NOT_FOUND)], "Unimplemented");
        assert_eq!(
            CODES[code_of_http(StatusCode::SERVICE_UNAVAILABLE)],
            "Unavailable"
        );
        assert_eq!(split_path("/pkg.Svc/Do"), ("pkg.Svc", "Do"));
        assert_eq!(split_path("/garbled"), ("garbled", "unknown"));
        assert_eq!(split_path("/"), ("unknown", "unknown"));
        assert_eq!(method_label(&Method::from_bytes(b"FOO").unwrap()), "_OTHER");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let mut digits = [0u8; 3];
        assert_eq!(status_label(404, &mut digits), "404");
    }
}
