//! The service: starts watching each request, wraps its body, and returns a
//! [`ResponseFuture`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::{RequestBody, ResponseBody};
use super::call::{Call, Shared};
use super::future::ResponseFuture;
use crate::collector::Collector;

/// A service wrapped by a [`MetricsLayer`](super::MetricsLayer).
pub struct MetricsService<S, C> {
    inner: S,
    shared: Arc<Shared<C>>,
}

impl<S: Clone, C> Clone for MetricsService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, C> std::fmt::Debug for MetricsService<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsService").finish_non_exhaustive()
    }
}

impl<S, C> MetricsService<S, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<C>>) -> Self {
        Self { inner, shared }
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for MetricsService<S, C>
where
    S: Service<Request<RequestBody<ReqBody, C>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ResBody: Body,
    C: Collector,
{
    type Response = Response<ResponseBody<ResBody, C>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let call = Arc::new(Call::start(&self.shared, &parts));
        let request = Request::from_parts(parts, RequestBody::new(body, call.clone()));
        ResponseFuture::new(self.inner.call(request), call)
    }
}
