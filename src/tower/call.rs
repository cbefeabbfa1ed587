//! One request's recording: its label values, when it started, and what ends it.
//!
//! A [`Call`] is shared (in an `Arc`) by the request body and the response body. On a
//! server the request body carries the messages the client sends and the response body
//! those the server sends; on a client, the other way round. The response body records the
//! end: from the trailers' `grpc-status`, from a trailers-only response's `grpc-status`,
//! from the HTTP status a router answered with, or `Canceled` when the body is dropped
//! before its end. The end is recorded once, whichever comes first.
//!
//! A gRPC call's labels are decided once, and every series of the call uses them. For a
//! path known when the call starts (named, learned, or any path on a client) that is at
//! the start, and `started` is counted then. For a path the layer has not yet seen served,
//! it is at the response head, where the server says whether it serves the method
//! ([`Methods::answered`]): `started` is counted then, and the messages counted before
//! wait for it. A call that ends before any head (cancelled, failed) is decided at its end.
//! So each series counts every call exactly once, under one label set, from the first call
//! of each method.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::StatusCode;

use super::grpc::{split_path, GrpcCode, GrpcType, Names, Series, Side};
use super::http::{method_label, route_label, status_label, ACTIVE, SECONDS};
use super::methods::Methods;
use super::trace::{Trace, Traces};
use crate::collector::Collector;

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

/// A gRPC call's labels, once decided.
struct Decided {
    grpc_type: GrpcType,
    /// Whether the method gets its own labels (else `unknown` labels it).
    known: bool,
}

/// What a call is labelled with.
enum Labels {
    Grpc {
        /// `/package.Service/Method`; service and method are slices of it.
        path: String,
        side: Side,
        /// The client's deadline (client side only).
        deadline: Option<Instant>,
        /// Set once: at the start, the head or the end (see the module documentation).
        decided: OnceLock<Decided>,
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
    /// Messages of the request and the response, not yet recorded: a call records them in
    /// batches, not with one collector lookup per message.
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
            Direction::Request => names.request_messages.0,
            Direction::Response => names.response_messages.0,
        }
    }
}

impl<C: Collector> Call<C> {
    /// Starts watching a request: counts it started (gRPC, when its labels are known now)
    /// or active (HTTP).
    pub(crate) fn start(shared: &Arc<Shared<C>>, parts: &http::request::Parts) -> Self {
        let labels = match &shared.protocol {
            Protocol::Grpc { side, .. } => Labels::Grpc {
                path: parts.uri.path().to_owned(),
                side: *side,
                deadline: side.deadline(&parts.headers, Instant::now()),
                decided: OnceLock::new(),
            },
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
        match &call.labels {
            Labels::Grpc { path, .. } => {
                if let Some(known) = call.methods().and_then(|m| m.at_start(path)) {
                    call.decide(known);
                }
            }
            Labels::Http { method, route, .. } => {
                let labels = [
                    "http_request_method",
                    method,
                    "http_route",
                    route_label(route),
                ];
                call.shared.collector.add_to_gauge(ACTIVE.0, 1.0, &labels);
            }
        }
        call
    }

    fn methods(&self) -> Option<&Methods> {
        match &self.shared.protocol {
            Protocol::Grpc { methods, .. } => Some(methods),
            Protocol::Http { .. } => None,
        }
    }

    /// Decides a gRPC call's labels, once: counts it started and records the messages that
    /// waited for it.
    fn decide(&self, known: bool) {
        let (Labels::Grpc { path, decided, .. }, Protocol::Grpc { types, .. }) =
            (&self.labels, &self.shared.protocol)
        else {
            return;
        };
        let grpc_type = match (types, known) {
            (Some(types), true) => {
                let (service, method) = split_path(path);
                types(service, method)
            }
            _ => GrpcType::Unknown,
        };
        if decided.set(Decided { grpc_type, known }).is_err() {
            return;
        }
        self.with_grpc_labels(|names, labels| {
            self.shared
                .collector
                .increment_counter(names.started.0, labels)
        });
        self.flush(Direction::Request);
        self.flush(Direction::Response);
    }

    /// Whether messages are counted (gRPC).
    pub(crate) fn counts_messages(&self) -> bool {
        matches!(self.labels, Labels::Grpc { .. })
    }

    /// Runs `f` with the side's names and the call's labels (gRPC, once decided).
    fn with_grpc_labels(&self, f: impl FnOnce(&'static Names, &[&str])) {
        if let Labels::Grpc {
            path,
            side,
            decided,
            ..
        } = &self.labels
        {
            let Some(decided) = decided.get() else {
                return;
            };
            let (service, method) = match decided.known {
                true => split_path(path),
                false => ("unknown", "unknown"),
            };
            f(
                side.names(),
                &[
                    "grpc_type",
                    decided.grpc_type.as_str(),
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

    /// Records the messages waiting in `direction`, once the labels are decided (until
    /// then they wait: the decision and the end flush them).
    fn flush(&self, direction: Direction) {
        if let Labels::Grpc { decided, .. } = &self.labels {
            if decided.get().is_none() {
                return;
            }
        }
        let n = self.pending[direction as usize].swap(0, Ordering::AcqRel);
        if n > 0 {
            self.with_grpc_labels(|names, l| {
                self.shared
                    .collector
                    .add_to_counter(direction.metric(names), n, l)
            });
        }
    }

    /// The response's head arrived, with this HTTP status and the `grpc-status` it
    /// carries (a trailers-only response): decides a gRPC call's labels if they waited
    /// for it; keeps an HTTP request's status.
    pub(crate) fn responded(&self, status: StatusCode, head: Option<GrpcCode>) {
        match &self.labels {
            Labels::Grpc { path, decided, .. } => {
                if decided.get().is_none() {
                    let code = match status {
                        StatusCode::OK => head,
                        other => Some(GrpcCode::of_http(other)),
                    };
                    let known = self.methods().is_some_and(|m| m.answered(path, code));
                    self.decide(known);
                }
            }
            Labels::Http { status: s, .. } => {
                s.store(i64::from(status.as_u16()), Ordering::Relaxed)
            }
        }
    }

    /// Records the end, once: with the gRPC `code`, or for HTTP with the status seen.
    fn end(&self, code: GrpcCode) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let collector = &self.shared.collector;
        match &self.labels {
            Labels::Grpc { path, decided, .. } => {
                if decided.get().is_none() {
                    // Ended before any head: labelled as the layer knows the path now.
                    self.decide(self.methods().is_some_and(|m| m.knows(path)));
                }
                self.flush(Direction::Request);
                self.flush(Direction::Response);
                self.with_grpc_labels(|names, labels| {
                    let [_, t, _, s, _, m] = labels else { return };
                    let handled = [
                        "grpc_type",
                        t,
                        "grpc_service",
                        s,
                        "grpc_method",
                        m,
                        "grpc_code",
                        code.as_str(),
                    ];
                    self.record_end(names.handled, &handled, names.seconds, seconds, labels);
                });
            }
            Labels::Http {
                method,
                route,
                status,
            } => {
                let route = route_label(route);
                let mut digits = [0u8; 3];
                let status = status_label(status.load(Ordering::Relaxed), &mut digits);
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
                        SECONDS.0,
                        seconds,
                        &labels,
                        &["trace_id", id],
                    ),
                    None => collector.record_histogram(SECONDS.0, seconds, &labels),
                }
                let active = ["http_request_method", method, "http_route", route];
                collector.add_to_gauge(ACTIVE.0, -1.0, &active);
            }
        }
    }

    /// Counts a gRPC call handled and observes its seconds, with the trace's exemplar.
    fn record_end(
        &self,
        handled: Series,
        handled_labels: &[&str],
        timed: Series,
        seconds: f64,
        labels: &[&str],
    ) {
        let collector = &self.shared.collector;
        match self.trace.id() {
            Some(id) => {
                let exemplar = ["trace_id", id];
                collector.increment_counter_with_exemplar(handled.0, handled_labels, &exemplar);
                collector.record_histogram_with_exemplar(timed.0, seconds, labels, &exemplar);
            }
            None => {
                collector.increment_counter(handled.0, handled_labels);
                collector.record_histogram(timed.0, seconds, labels);
            }
        }
    }

    /// The response ended: with the `grpc-status` of its trailers, else of its head (a
    /// trailers-only response), else `Unknown`.
    pub(crate) fn finished(&self, head: Option<GrpcCode>, trailers: Option<GrpcCode>) {
        self.end(trailers.or(head).unwrap_or(GrpcCode::Unknown));
    }

    /// An HTTP error answered before any gRPC response.
    pub(crate) fn failed_with_status(&self, status: StatusCode) {
        self.end(GrpcCode::of_http(status));
    }

    /// The service failed (no response at all): `Unknown` for a gRPC server,
    /// `Unavailable` (or `DeadlineExceeded`) for a gRPC client, `500` for HTTP.
    pub(crate) fn errored(&self) {
        if let Labels::Http { status, .. } = &self.labels {
            status.store(500, Ordering::Relaxed);
        }
        self.end(match &self.labels {
            Labels::Grpc { side, deadline, .. } => {
                side.transport_failed(*deadline, GrpcCode::Unknown)
            }
            Labels::Http { .. } => GrpcCode::Unknown,
        });
    }

    /// The response body was dropped before its end: the client went away (or, on a
    /// client, cancelled; past its deadline, `DeadlineExceeded`).
    pub(crate) fn canceled(&self) {
        self.end(match &self.labels {
            Labels::Grpc { side, deadline, .. } => side.canceled(*deadline),
            Labels::Http { .. } => GrpcCode::Canceled,
        });
    }

    /// The response body failed: the stream is cut. `Canceled` on a server; on a client,
    /// the transport failed (`Unavailable`, or `DeadlineExceeded` past the deadline).
    pub(crate) fn broken(&self) {
        self.end(match &self.labels {
            Labels::Grpc { side, deadline, .. } => {
                side.transport_failed(*deadline, GrpcCode::Canceled)
            }
            Labels::Http { .. } => GrpcCode::Canceled,
        });
    }
}
