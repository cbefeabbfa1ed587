//! Request metrics for tower services (feature `tower`): gRPC with go-grpc-middleware's
//! names, HTTP with OpenTelemetry's, recorded through any [`Collector`].
//!
//! [`MetricsLayer`] wraps any `Service<http::Request<B>>` returning `http::Response<B2>`,
//! the shape of tonic and axum services alike, and watches each response to its end. The
//! series it records, and how it labels them, are the tables of *Request metrics for tonic
//! and axum* in the [guide](crate::guide) (their one copy).
//!
//! ```
//! use porter_metrics::tower::{GrpcType, MetricsLayer};
//! use porter_metrics::{FilteringCollector, LocalRecorder};
//!
//! let recorder = LocalRecorder::new();
//! // The decorators compose: drop the health checks' series.
//! let collector = FilteringCollector::deny(recorder.collector()).prefix("grpc.health");
//! let layer = MetricsLayer::grpc(std::sync::Arc::new(collector)).grpc_types(|_, method| {
//!     match method {
//!         "DoGet" => GrpcType::ServerStream,
//!         "DoPut" => GrpcType::BidiStream,
//!         _ => GrpcType::Unary,
//!     }
//! });
//! // With tonic: `Server::builder().layer(layer).add_service(...)`.
//! # let _ = layer;
//! ```

mod body;
mod call;
mod client;
mod future;
mod methods;
mod service;
mod trace;

use std::sync::Arc;

pub use body::{RequestBody, ResponseBody};
pub use call::GrpcType;
pub use future::ResponseFuture;
pub use service::MetricsService;

use crate::collector::Collector;
use call::{Protocol, Shared};
use client::Side;
use methods::Methods;
use trace::Traces;

/// A tower [`Layer`](tower_layer::Layer) recording request metrics; see the module
/// documentation.
pub struct MetricsLayer<C> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for MetricsLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<C> std::fmt::Debug for MetricsLayer<C> {
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

impl<C: Collector + Clone + Send + Sync + 'static> MetricsLayer<C> {
    /// gRPC metrics, with go-grpc-middleware's names and labels.
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

    /// HTTP metrics, with OpenTelemetry's names and labels.
    ///
    /// ```
    /// let layer = porter_metrics::tower::MetricsLayer::http(porter_metrics::NoopCollector);
    /// # let _ = layer;
    /// ```
    pub fn http(collector: C) -> Self {
        Self::with(collector, Protocol::Http { route: None })
    }

    fn with(collector: C, protocol: Protocol) -> Self {
        Self {
            shared: Arc::new(Shared {
                collector,
                protocol,
                traces: Traces::W3c,
            }),
        }
    }

    /// How to tell a gRPC method's type from its service and method names (gRPC only).
    ///
    /// ```
    /// use porter_metrics::tower::{GrpcType, MetricsLayer};
    /// let layer = MetricsLayer::grpc(porter_metrics::NoopCollector).grpc_types(|service, method| {
    ///     match (service, method) {
    ///         ("echo.Echo", "Stream") => GrpcType::BidiStream,
    ///         _ => GrpcType::Unary,
    ///     }
    /// });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn grpc_types(
        self,
        types: impl Fn(&str, &str) -> GrpcType + Send + Sync + 'static,
    ) -> Self {
        self.map_protocol(|protocol| match protocol {
            Protocol::Grpc { side, methods, .. } => Protocol::Grpc {
                types: Some(Arc::new(types)),
                side,
                methods,
            },
            http => http,
        })
    }

    /// The methods the server serves, as `/package.Service/Method` paths (gRPC server
    /// only). They get their own `grpc_service` and `grpc_method` labels; a call to any
    /// other path is labelled `grpc_service="unknown", grpc_method="unknown"` (with its
    /// `grpc_code`), so no client can add series by calling made-up methods.
    ///
    /// Without it, the layer learns: a path gets its own labels once a call to it ended
    /// with any code but `Unimplemented` (what tonic's router answers for a method it does
    /// not serve), at most 1024 paths. Naming them is exact from the first call, and safe
    /// behind middleware that answers unknown paths with another code (an authentication
    /// layer outside the router, say).
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
            Protocol::Grpc {
                types,
                side: Side::Server,
                ..
            } => Protocol::Grpc {
                types,
                side: Side::Server,
                methods: named,
            },
            other => other,
        })
    }

    /// How to find a request's route template (HTTP only): `None` is `unmatched`. With axum,
    /// add the layer with `Router::layer` and read `MatchedPath`.
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

    /// Where the trace id of a request's exemplars comes from: by default the W3C
    /// `traceparent` header; here a function of the request (`None`: no exemplar). The
    /// trace id becomes the `trace_id` exemplar of `grpc_server_handled_total`,
    /// `grpc_server_handling_seconds` and `http_server_request_duration_seconds`.
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
        }
    }
}

impl<C: Collector + Clone + Send + Sync + 'static> MetricsLayer<C> {
    /// gRPC client metrics, with go-grpc-middleware's names and labels:
    /// `grpc_client_started_total`, `grpc_client_handled_total{grpc_code}`,
    /// `grpc_client_msg_sent_total`, `grpc_client_msg_received_total` and the
    /// `grpc_client_handling_seconds` histogram, by `grpc_type`, `grpc_service` and
    /// `grpc_method`. Configure it with [`grpc_types`](Self::grpc_types) as on the server.
    ///
    /// It wraps any `Service<http::Request<B>>`. The service under it gets the request with
    /// its body wrapped; a tonic `Channel` takes `tonic::body::Body` only, so box it back
    /// (tonic's client types take any such service):
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

impl<S, C> tower_layer::Layer<S> for MetricsLayer<C> {
    type Service = MetricsService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService::new(inner, self.shared.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knows(layer: &MetricsLayer<crate::NoopCollector>, path: &str) -> bool {
        match &layer.shared.protocol {
            Protocol::Grpc { methods, .. } => methods.knows(path),
            Protocol::Http { .. } => false,
        }
    }

    #[test]
    fn a_cloned_layer_is_still_configured_and_its_clone_keeps_its_own_settings() {
        let layer = MetricsLayer::grpc(crate::NoopCollector);
        let kept = layer.clone();
        let named = layer.grpc_methods(["/a.B/C"]).without_exemplars();
        assert!(knows(&named, "/a.B/C"), "configured after a clone");
        assert!(matches!(named.shared.traces, Traces::Off));
        assert!(!knows(&kept, "/a.B/C"), "the clone keeps what it had");
        assert!(matches!(kept.shared.traces, Traces::W3c));
    }
}
