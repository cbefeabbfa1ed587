//! [`MetricsLayer`]: chosen by constructor per protocol, so each protocol has exactly the
//! settings that apply to it.

use std::marker::PhantomData;
use std::sync::Arc;

use metrics::Unit;

use super::call::{Protocol, Shared};
use super::grpc::{GrpcType, Side};
use super::http::{ACTIVE, SECONDS};
use super::methods::Methods;
use super::service::MetricsService;
use super::trace::Traces;
use crate::collector::Collector;

/// A gRPC server's layer: [`MetricsLayer::grpc`].
#[derive(Clone, Copy, Debug)]
pub struct Grpc;

/// A gRPC client's layer: [`MetricsLayer::grpc_client`].
#[derive(Clone, Copy, Debug)]
pub struct GrpcClient;

/// An HTTP server's layer: [`MetricsLayer::http`].
#[derive(Clone, Copy, Debug)]
pub struct Http;

/// A tower [`Layer`](tower_layer::Layer) recording request metrics; see the module
/// documentation. `P` is the protocol it was made for ([`Grpc`], [`GrpcClient`] or
/// [`Http`]): it has the settings of that protocol, and no other.
pub struct MetricsLayer<C, P> {
    shared: Arc<Shared<C>>,
    protocol: PhantomData<fn() -> P>,
}

impl<C, P> Clone for MetricsLayer<C, P> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            protocol: PhantomData,
        }
    }
}

impl<C, P> std::fmt::Debug for MetricsLayer<C, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = match self.shared.protocol {
            Protocol::Grpc { side, .. } => side.label(),
            Protocol::Http { .. } => "http",
        };
        f.debug_struct("MetricsLayer")
            .field("protocol", &protocol)
            .finish_non_exhaustive()
    }
}

impl<C: Collector + Clone + Send + Sync + 'static> MetricsLayer<C, Grpc> {
    /// gRPC server metrics, with go-grpc-middleware's names and labels.
    ///
    /// ```
    /// let layer = porter_metrics::tower::MetricsLayer::grpc(porter_metrics::NoopCollector);
    /// # let _ = layer;
    /// ```
    pub fn grpc(collector: C) -> Self {
        Self::with(
            collector,
            Protocol::Grpc {
                types: None,
                side: Side::Server,
                methods: Methods::learned(),
            },
        )
    }

    /// The methods the server serves, as `/package.Service/Method` paths. They get their
    /// own `grpc_service` and `grpc_method` labels; a call to any other path is labelled
    /// `grpc_service="unknown", grpc_method="unknown"` (with its `grpc_code`), so no client
    /// can add series by calling made-up methods.
    ///
    /// Without it, the layer learns at the response head: a path is served unless its
    /// answer is `Unimplemented` (what tonic's router answers for a method it does not
    /// serve) or an HTTP 404, at most 1024 paths. Every call is labelled with its method,
    /// the first one included. Name the methods when middleware outside the router answers
    /// made-up paths with another code (an authentication layer, say): learned, each such
    /// path would get its own labels, up to the bound.
    ///
    /// ```
    /// use porter_metrics::tower::MetricsLayer;
    /// let layer = MetricsLayer::grpc(porter_metrics::NoopCollector)
    ///     .grpc_methods(["/echo.Echo/Say", "/echo.Echo/Stream"]);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn grpc_methods(self, paths: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let named = Methods::named(paths);
        self.map_protocol(|protocol| match protocol {
            Protocol::Grpc { types, side, .. } => Protocol::Grpc {
                types,
                side,
                methods: named,
            },
            http => http,
        })
    }
}

impl<C: Collector + Clone + Send + Sync + 'static> MetricsLayer<C, GrpcClient> {
    /// gRPC client metrics, with go-grpc-middleware's names and labels:
    /// `grpc_client_started_total`, `grpc_client_handled_total{grpc_code}`,
    /// `grpc_client_msg_sent_total`, `grpc_client_msg_received_total` and the
    /// `grpc_client_handling_seconds` histogram, by `grpc_type`, `grpc_service` and
    /// `grpc_method`. Every path is its own method (the calls are the application's).
    ///
    /// It wraps any `Service<http::Request<B>>`. The service under it gets the request with
    /// its body wrapped; a tonic `Channel` takes `tonic::body::Body` only, so box it back
    /// (tonic's client types take any such service), as the example crate's
    /// `instrument_channel` and its program `examples/flight-sql/examples/tonic_layer.rs`
    /// (compiled and run by CI) do:
    ///
    /// ```text
    /// let channel = tower::ServiceBuilder::new()
    ///     .layer(MetricsLayer::grpc_client(collector).grpc_types(flight_grpc_types))
    ///     .map_request(|r: http::Request<_>| r.map(tonic::body::Body::new))
    ///     .service(channel);
    /// let client = FlightServiceClient::new(channel);
    /// ```
    ///
    /// ```
    /// use porter_metrics::tower::MetricsLayer;
    /// let layer = MetricsLayer::grpc_client(porter_metrics::NoopCollector);
    /// assert!(format!("{layer:?}").contains("grpc_client"));
    /// ```
    pub fn grpc_client(collector: C) -> Self {
        Self::with(
            collector,
            Protocol::Grpc {
                types: None,
                side: Side::Client,
                methods: Methods::All,
            },
        )
    }
}

/// The gRPC sides, [`Grpc`] and [`GrpcClient`]: what both have.
pub trait GrpcSide: sealed::Sealed {}
impl GrpcSide for Grpc {}
impl GrpcSide for GrpcClient {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Grpc {}
    impl Sealed for super::GrpcClient {}
}

impl<C: Collector + Clone + Send + Sync + 'static, P: GrpcSide> MetricsLayer<C, P> {
    /// How to tell a gRPC method's type from its service and method names (either side).
    ///
    /// ```
    /// use porter_metrics::tower::{GrpcType, MetricsLayer};
    /// let layer = MetricsLayer::grpc(porter_metrics::NoopCollector).grpc_types(|service, method| {
    ///     match (service, method) {
    ///         ("echo.Echo", "Stream") => GrpcType::BidiStream,
    ///         _ => GrpcType::Unary,
    ///     }
    /// });
    /// let client = MetricsLayer::grpc_client(porter_metrics::NoopCollector)
    ///     .grpc_types(|_, _| GrpcType::Unary);
    /// # let _ = (layer, client);
    /// ```
    #[must_use]
    pub fn grpc_types(
        self,
        types: impl Fn(&str, &str) -> GrpcType + Send + Sync + 'static,
    ) -> Self {
        let types: super::call::TypeOf = Arc::new(types);
        self.map_protocol(|protocol| match protocol {
            Protocol::Grpc { side, methods, .. } => Protocol::Grpc {
                types: Some(types),
                side,
                methods,
            },
            http => http,
        })
    }
}

impl<C: Collector + Clone + Send + Sync + 'static> MetricsLayer<C, Http> {
    /// HTTP server metrics, with OpenTelemetry's names and labels.
    ///
    /// ```
    /// let layer = porter_metrics::tower::MetricsLayer::http(porter_metrics::NoopCollector);
    /// # let _ = layer;
    /// ```
    pub fn http(collector: C) -> Self {
        Self::with(collector, Protocol::Http { route: None })
    }

    /// How to find a request's route template: `None` is `unmatched`. With axum, add the
    /// layer with `Router::layer` and read `MatchedPath`.
    ///
    /// ```
    /// use porter_metrics::tower::MetricsLayer;
    /// let layer = MetricsLayer::http(porter_metrics::NoopCollector).route(|request| {
    ///     request.uri.path().starts_with("/users/").then(|| "/users/{id}".to_owned())
    /// });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn route(
        self,
        route: impl Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.map_protocol(|protocol| match protocol {
            Protocol::Http { .. } => Protocol::Http {
                route: Some(Arc::new(route)),
            },
            grpc => grpc,
        })
    }
}

impl<C: Collector + Clone + Send + Sync + 'static, P> MetricsLayer<C, P> {
    /// A layer for `protocol`, its series described in `collector`.
    fn with(collector: C, protocol: Protocol) -> Self {
        describe(&collector, &protocol);
        Self {
            shared: Arc::new(Shared {
                collector,
                protocol,
                traces: Traces::W3c,
            }),
            protocol: PhantomData,
        }
    }

    /// Where the trace id of a request's exemplars comes from: by default the W3C
    /// `traceparent` header; here a function of the request (`None`: no exemplar). The
    /// trace id becomes the `trace_id` exemplar of `grpc_*_handled_total`,
    /// `grpc_*_handling_seconds` and `http_server_request_duration_seconds`.
    ///
    /// ```
    /// use porter_metrics::tower::MetricsLayer;
    /// let layer = MetricsLayer::grpc(porter_metrics::NoopCollector).exemplars(|request| {
    ///     request.headers.get("x-request-id")?.to_str().ok().map(str::to_owned)
    /// });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn exemplars(
        self,
        trace_id: impl Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.map_shared(|shared| Shared {
            traces: Traces::Custom(Arc::new(trace_id)),
            ..shared
        })
    }

    /// Records no exemplars.
    ///
    /// ```
    /// let layer = porter_metrics::tower::MetricsLayer::http(porter_metrics::NoopCollector)
    ///     .without_exemplars();
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn without_exemplars(self) -> Self {
        self.map_shared(|shared| Shared {
            traces: Traces::Off,
            ..shared
        })
    }

    fn map_protocol(self, f: impl FnOnce(Protocol) -> Protocol) -> Self {
        self.map_shared(|shared| Shared {
            protocol: f(shared.protocol),
            ..shared
        })
    }

    fn map_shared(self, f: impl FnOnce(Shared<C>) -> Shared<C>) -> Self {
        // Copy on write: a layer cloned (or already serving) keeps its settings, and this
        // one gets the new ones.
        let shared = Arc::try_unwrap(self.shared).unwrap_or_else(|shared| (*shared).clone());
        Self {
            shared: Arc::new(f(shared)),
            protocol: PhantomData,
        }
    }

    /// The shared state (for the crate's tests).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared<C> {
        &self.shared
    }
}

/// Gives the protocol's series their HELP texts (and the histograms their unit).
fn describe<C: Collector>(collector: &C, protocol: &Protocol) {
    match protocol {
        Protocol::Grpc { side, .. } => {
            let names = side.names();
            for (name, help) in [
                names.started,
                names.handled,
                names.request_messages,
                names.response_messages,
            ] {
                collector.describe_counter(name, None, help);
            }
            let (name, help) = names.seconds;
            collector.describe_histogram(name, Some(Unit::Seconds), help);
        }
        Protocol::Http { .. } => {
            collector.describe_histogram(SECONDS.0, Some(Unit::Seconds), SECONDS.1);
            collector.describe_gauge(ACTIVE.0, None, ACTIVE.1);
        }
    }
}

impl<S, C, P> tower_layer::Layer<S> for MetricsLayer<C, P> {
    type Service = MetricsService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService::new(inner, self.shared.clone())
    }
}
