//! Request metrics for tower services (feature `tower`): gRPC with go-grpc-middleware's
//! names, HTTP with OpenTelemetry's, recorded through any [`Collector`].
//!
//! [`MetricsLayer`] wraps any `Service<http::Request<B>>` returning `http::Response<B2>`,
//! the shape of tonic and axum services alike, and watches each response to its end:
//!
//! | `MetricsLayer::grpc` | type | labels |
//! |---|---|---|
//! | `grpc_server_started_total` | counter | `grpc_type`, `grpc_service`, `grpc_method` |
//! | `grpc_server_handled_total` | counter | the same and `grpc_code` (`OK`, `NotFound`, ... as the Go provider spells them) |
//! | `grpc_server_msg_received_total` | counter | `grpc_type`, `grpc_service`, `grpc_method` |
//! | `grpc_server_msg_sent_total` | counter | `grpc_type`, `grpc_service`, `grpc_method` |
//! | `grpc_server_handling_seconds` | histogram | `grpc_type`, `grpc_service`, `grpc_method` |
//!
//! | `MetricsLayer::grpc_client` (around a client's channel) | type | labels |
//! |---|---|---|
//! | `grpc_client_started_total` | counter | `grpc_type`, `grpc_service`, `grpc_method` |
//! | `grpc_client_handled_total` | counter | the same and `grpc_code` |
//! | `grpc_client_msg_sent_total` | counter | `grpc_type`, `grpc_service`, `grpc_method` |
//! | `grpc_client_msg_received_total` | counter | `grpc_type`, `grpc_service`, `grpc_method` |
//! | `grpc_client_handling_seconds` | histogram | `grpc_type`, `grpc_service`, `grpc_method` |
//!
//! | `MetricsLayer::http` | type | labels |
//! |---|---|---|
//! | `http_server_request_duration_seconds` | histogram | `http_request_method`, `http_route`, `http_response_status_code` |
//! | `http_server_active_requests` | gauge | `http_request_method`, `http_route` |
//!
//! * The gRPC code and the duration are taken at the end of the response: from the
//!   trailers after the last body frame, or from the `grpc-status` header of a
//!   trailers-only response, never when the headers are sent (a server stream's status
//!   comes last). A missing or garbled `grpc-status` is `Unknown`; a response body dropped
//!   before its end (the client cancelled) is `Canceled`; an HTTP error answered before any
//!   gRPC response (a router's `404`) is the code gRPC maps it to (`Unimplemented`).
//! * On the client side the code comes at the end of the response too. A transport error
//!   before any response (a refused connection) is `Unavailable`, a call the caller drops
//!   before its end is `Canceled`, and either past the deadline the request carried
//!   (`grpc-timeout`) is `DeadlineExceeded`. The request body's messages are the ones
//!   sent, the response body's the ones received.
//! * Messages are the length-prefixed gRPC frames of the request and response bodies,
//!   counted as they pass, without copying them.
//! * `grpc_type` comes from [`MetricsLayer::grpc_types`] (the wire does not tell); without
//!   it, `unknown`.
//! * `http_route` is a template given by [`MetricsLayer::route`] (axum's `MatchedPath`,
//!   say), never the raw path; a request it does not match, and every request without one,
//!   is `unmatched`. Methods outside the standard set are `_OTHER`, as OpenTelemetry does,
//!   so a client cannot explode the label's cardinality.
//! * Per request, the layer allocates the label values it must keep until the response
//!   ends: the gRPC method path (or the HTTP route the route function returns), and the
//!   `Arc` sharing them between the request and response bodies.
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
mod service;

use std::sync::Arc;

pub use body::{RequestBody, ResponseBody};
pub use call::GrpcType;
pub use future::ResponseFuture;
pub use service::MetricsService;

use crate::collector::Collector;
use call::{ActiveRequests, Protocol, Shared};
use client::Side;

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
        Self::with(
            collector,
            Protocol::Http {
                route: None,
                active: ActiveRequests::default(),
            },
        )
    }

    fn with(collector: C, protocol: Protocol) -> Self {
        Self {
            shared: Arc::new(Shared {
                collector,
                protocol,
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
            Protocol::Grpc { side, .. } => Protocol::Grpc {
                types: Some(Box::new(types)),
                side,
            },
            http => http,
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
            Protocol::Http { active, .. } => Protocol::Http {
                route: Some(Box::new(route)),
                active,
            },
            grpc => grpc,
        })
    }

    fn map_protocol(self, f: impl FnOnce(Protocol) -> Protocol) -> Self {
        // Configured before the layer is cloned into services: the layer is the only owner.
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => Self::with(shared.collector, f(shared.protocol)),
            Err(shared) => Self { shared },
        }
    }
}

impl<S, C> tower_layer::Layer<S> for MetricsLayer<C> {
    type Service = MetricsService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService::new(inner, self.shared.clone())
    }
}
