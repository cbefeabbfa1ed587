//! Request metrics for tower services (feature `tower`): gRPC with go-grpc-middleware's
//! names, HTTP with OpenTelemetry's, recorded through any [`Collector`](crate::Collector).
//!
//! [`MetricsLayer`] wraps any `Service<http::Request<B>>` returning `http::Response<B2>`,
//! the shape of tonic and axum services alike, and watches each response to its end. Its
//! constructor picks the protocol: [`MetricsLayer::grpc`] (a server),
//! [`MetricsLayer::grpc_client`] (around a client's channel) or [`MetricsLayer::http`];
//! each has the settings of its protocol and no other. The series it records, what each
//! counts and how it labels them are the tables of *Request metrics for tonic and axum*
//! in the [guide](crate::guide) (their one copy); their HELP texts say it too.
//!
//! ```
//! use porter_metrics::tower::{GrpcType, MetricsLayer};
//! use porter_metrics::{FilteringCollector, LocalRecorder};
//!
//! let recorder = LocalRecorder::new();
//! // The decorators compose; a filter matches metric names: keep the calls and their
//! // latency, drop the message counts (`grpc_server_msg_received_total`, `..._sent_total`).
//! let collector = FilteringCollector::deny(recorder.collector()).prefix("grpc_server_msg_");
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
mod future;
mod grpc;
mod http;
mod layer;
mod methods;
mod service;
mod trace;

pub use body::{RequestBody, ResponseBody};
pub use future::ResponseFuture;
pub use grpc::GrpcType;
pub use layer::{Grpc, GrpcClient, GrpcSide, Http, MetricsLayer};
pub use service::MetricsService;

#[cfg(test)]
mod tests;
