//! A real Arrow Flight SQL server instrumented with porter-metrics, and a load generator
//! that drives it through arrow-flight's own Flight SQL client.
//!
//! * [`service::InMemoryService`] implements arrow-flight's `FlightSqlService` over two
//!   in-memory tables (`orders`, `customers`): statement queries (`GetFlightInfo`, then
//!   `DoGet` of the ticket), prepared statements (create and close through `DoAction`),
//!   bulk ingest (`DoPut` of `CommandStatementIngest`), basic-auth `Handshake`, and the
//!   [`catalog`] generic clients browse before any query (`CommandGetCatalogs`,
//!   `CommandGetDbSchemas`, `CommandGetTables`, `CommandGetTableTypes`,
//!   `CommandGetSqlInfo`). Its SQL is tiny on purpose: `SELECT * FROM <table> [LIMIT n]`.
//! * [`serve`] runs it with tonic behind porter-metrics' [`MetricsLayer`], which records
//!   the `grpc_server_*` series; the handlers record the domain series below.
//! * [`load::run_load`] sends a realistic mix over loopback (queries, prepared statements,
//!   ingests, catalog browses, unknown tables, bad SQL, handshakes) and tallies what the
//!   client saw.
//!
//! # Domain metrics (names are stable: tests, alert rules and the dashboard use them)
//!
//! | name | type | labels | recorded through |
//! |---|---|---|---|
//! | `flight_requests_total` | counter | `method`, `status` | `increment_counter` |
//! | `flight_errors_total` | counter | `{method, code}`; `{method, code, table}` for an unknown table; `{code}` for a failed handshake | `increment_counter` |
//! | `flight_request_duration_seconds` | histogram | `method` | `record_histogram` (seconds in the handler) |
//! | `flight_query_duration_seconds` | histogram | none | `start_timer` + `stop()` around query execution |
//! | `flight_handler_duration_seconds` | histogram | none | `start_timer` dropped at the end of the handler |
//! | `flight_requests_in_flight` | gauge | none | `record_gauge` |
//! | `flight_bytes_sent_total` | counter | `method` | the `metrics::counter!` macro |
//! | `flight_result_cache_entries` | gauge | none | `record_gauge` (open prepared statements) |
//!
//! `method` is the Flight RPC (`Handshake`, `GetFlightInfo`, `DoGet`, `DoPut`, `DoAction`);
//! `status` and `code` are gRPC status names as [`code_name`] spells them (`OK`,
//! `INVALID_ARGUMENT`, `NOT_FOUND`, `UNAUTHENTICATED`, ...). `table` is the name the client
//! asked for, so its values are the client's choice: porter-metrics' per-metric series
//! limit ([`Limits`](porter_metrics::Limits), 2000 by default) bounds them.
//!
//! Requests the example leaves to arrow-flight's defaults (primary and foreign keys, XDBC
//! type info, substrait plans, transactions, `ListFlights`, ...) are answered `UNIMPLEMENTED` without reaching
//! a handler: they appear in the `grpc_server_*` series only.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod catalog;
pub mod load;
pub mod service;

use std::future::Future;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use porter_metrics::tower::{GrpcClient, GrpcType, MetricsLayer, MetricsService, RequestBody};
use porter_metrics::{Collector, LocalRecorder};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Channel;
use tonic::Code;

pub use load::{run_load, LoadConfig, Stop, Tally};
pub use service::InMemoryService;

/// Counter: requests by `method` and `status`.
pub const REQUESTS: &str = "flight_requests_total";
/// Counter: errors; the label set depends on the error (see the crate documentation).
pub const ERRORS: &str = "flight_errors_total";
/// Histogram: seconds spent in each handler, by `method`.
pub const REQUEST_DURATION: &str = "flight_request_duration_seconds";
/// Histogram: seconds spent executing queries (a stopped timer).
pub const QUERY_DURATION: &str = "flight_query_duration_seconds";
/// Histogram: seconds spent in handlers (a timer dropped at the end of the handler).
pub const HANDLER_DURATION: &str = "flight_handler_duration_seconds";
/// Gauge: requests being handled.
pub const IN_FLIGHT: &str = "flight_requests_in_flight";
/// Counter (through the `metrics` macros): bytes of response messages, by `method`.
pub const BYTES_SENT: &str = "flight_bytes_sent_total";
/// Gauge: open prepared statements.
pub const CACHE_ENTRIES: &str = "flight_result_cache_entries";

/// Where the server records: a collector for the domain and `grpc_server_*` series, and,
/// for a standalone pipeline, the recorder that the `metrics` macros must use (without
/// one they use the global recorder).
#[derive(Clone)]
pub struct Telemetry {
    collector: Arc<dyn Collector>,
    recorder: Option<LocalRecorder>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("local_recorder", &self.recorder.is_some())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Records through `collector`; the `metrics` macros go to the global recorder.
    pub fn new(collector: impl Collector + 'static) -> Self {
        Self {
            collector: Arc::new(collector),
            recorder: None,
        }
    }

    /// Sends the `metrics` macros to `recorder` (a standalone server's
    /// [`recorder`](porter_metrics::MetricsServer::recorder)) instead of the global one.
    #[must_use]
    pub fn with_recorder(mut self, recorder: LocalRecorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// The collector.
    pub fn collector(&self) -> &Arc<dyn Collector> {
        &self.collector
    }

    /// Runs `f`, whose `metrics` macros record where this telemetry records.
    pub fn with_macros<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.recorder {
            Some(recorder) => metrics::with_local_recorder(recorder, f),
            None => f(),
        }
    }
}

/// A gRPC status code as the old server spelled it: `OK`, `INVALID_ARGUMENT`, ...
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The streaming type of each `arrow.flight.protocol.FlightService` method, for
/// [`MetricsLayer::grpc_types`].
///
/// ```
/// use porter_flight_sql::flight_grpc_types;
/// use porter_metrics::tower::GrpcType;
///
/// let service = "arrow.flight.protocol.FlightService";
/// assert_eq!(flight_grpc_types(service, "DoGet"), GrpcType::ServerStream);
/// assert_eq!(flight_grpc_types("other.Service", "DoGet"), GrpcType::Unknown);
/// ```
pub fn flight_grpc_types(service: &str, method: &str) -> GrpcType {
    if service != "arrow.flight.protocol.FlightService" {
        return GrpcType::Unknown;
    }
    match method {
        "GetFlightInfo" | "PollFlightInfo" | "GetSchema" => GrpcType::Unary,
        "ListFlights" | "DoGet" | "DoAction" | "ListActions" => GrpcType::ServerStream,
        "Handshake" | "DoPut" | "DoExchange" => GrpcType::BidiStream,
        _ => GrpcType::Unknown,
    }
}

/// Every method of the Flight service, as `/package.Service/Method` paths: the server's
/// layer gives these their own labels ([`MetricsLayer::grpc_methods`]), and labels a call
/// to any other path `unknown`, so a client cannot add series with made-up paths.
///
/// ```
/// assert_eq!(porter_flight_sql::FLIGHT_METHODS.len(), 10);
/// ```
pub const FLIGHT_METHODS: [&str; 10] = [
    "/arrow.flight.protocol.FlightService/Handshake",
    "/arrow.flight.protocol.FlightService/ListFlights",
    "/arrow.flight.protocol.FlightService/GetFlightInfo",
    "/arrow.flight.protocol.FlightService/PollFlightInfo",
    "/arrow.flight.protocol.FlightService/GetSchema",
    "/arrow.flight.protocol.FlightService/DoGet",
    "/arrow.flight.protocol.FlightService/DoPut",
    "/arrow.flight.protocol.FlightService/DoExchange",
    "/arrow.flight.protocol.FlightService/DoAction",
    "/arrow.flight.protocol.FlightService/ListActions",
];

/// A tonic [`Channel`] that takes the client layer's request body, boxed into tonic's own:
/// a `Channel` takes `tonic::body::Body` only, and the layer wraps the body to count the
/// messages sent.
#[derive(Clone, Debug)]
pub struct Rebox(Channel);

// For the client layer's body only (not any body): a generic body bound would have the
// compiler prove `Send` for it inside every async caller, which it cannot always do.
impl<C> tower::Service<http::Request<RequestBody<tonic::body::Body, C>>> for Rebox
where
    C: Collector + Send + Sync + 'static,
{
    type Response = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Response;
    type Error = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Error;
    type Future = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, request: http::Request<RequestBody<tonic::body::Body, C>>) -> Self::Future {
        self.0.call(request.map(tonic::body::Body::new))
    }
}

/// A tonic [`Channel`] under porter-metrics' client layer, each call carrying a W3C
/// `traceparent`: what [`instrument_channel`] returns. tonic's clients (and arrow-flight's
/// `FlightSqlServiceClient`) take it as they take a `Channel`.
pub type MeteredChannel<C> = Traced<MetricsService<Rebox, C>>;

/// Gives every request a W3C `traceparent` header with a fresh trace id, as a client
/// instrumented with OpenTelemetry sends one: the server's layer turns it into exemplars.
#[derive(Clone, Debug)]
pub struct Traced<S>(S);

impl<S, B> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Ok(value) = http::HeaderValue::from_str(&traceparent()) {
            request.headers_mut().insert("traceparent", value);
        }
        self.0.call(request)
    }
}

/// A `traceparent` value with fresh random trace and span ids (sampled).
pub fn traceparent() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    // splitmix64 over a counter seeded from the clock: ids need to be distinct, not secret.
    let next = || {
        let seed = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) | 1
    };
    let trace = format!("{:016x}{:016x}", next(), next());
    remember(&trace);
    format!("00-{trace}-{:016x}-01", next())
}

/// The first trace ids sent, so tests can recognise them in Prometheus' exemplars.
static SENT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
const REMEMBERED: usize = 100_000;

fn remember(trace: &str) {
    let mut sent = SENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if sent.len() < REMEMBERED {
        sent.push(trace.to_owned());
    }
}

/// The trace ids this process sent in `traceparent` headers (the first 100 000).
pub fn sent_trace_ids() -> Vec<String> {
    SENT.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Wraps `channel` in `layer` (a [`MetricsLayer::grpc_client`]), so every call through it
/// records the `grpc_client_*` series.
///
/// ```
/// use porter_flight_sql::{flight_grpc_types, instrument_channel};
/// use porter_metrics::tower::MetricsLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
/// let layer = MetricsLayer::grpc_client(porter_metrics::NoopCollector).grpc_types(flight_grpc_types);
/// let client = arrow_flight::sql::client::FlightSqlServiceClient::new(instrument_channel(channel, &layer));
/// # let _ = client;
/// # }
/// ```
pub fn instrument_channel<C>(
    channel: Channel,
    layer: &MetricsLayer<C, GrpcClient>,
) -> MeteredChannel<C> {
    Traced(tower::Layer::layer(layer, Rebox(channel)))
}

/// Serves Flight SQL on `listener` until `shutdown` completes, recording the domain
/// series through `telemetry` and the `grpc_server_*` series through porter-metrics'
/// tower layer. Requests in flight at shutdown are let finish.
///
/// # Errors
/// A tonic transport error (the listener failed).
pub async fn serve(
    listener: TcpListener,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let layer = MetricsLayer::grpc(telemetry.collector.clone())
        .grpc_types(flight_grpc_types)
        .grpc_methods(FLIGHT_METHODS);
    let service = InMemoryService::new(telemetry);
    // TCP_NODELAY, as `Server::serve` sets it: without it small responses wait for ACKs.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .layer(layer)
        .add_service(FlightServiceServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
