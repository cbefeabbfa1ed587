//! The HTTP layer on an axum router, as the guide shows it: `MetricsLayer::http` with the
//! route template from axum's `MatchedPath`, two requests served, the series printed.
//!
//! ```text
//! cargo run -p porter-flight-sql --example axum_layer
//! ```

use std::error::Error;

use axum::extract::MatchedPath;
use axum::routing::get;
use axum::Router;
use porter_metrics::tower::MetricsLayer;
use porter_metrics::LocalRecorder;
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let recorder = LocalRecorder::new();
    // `Router::layer` runs after routing, so `MatchedPath` is there: `http_route` is the
    // template, never the path a client sent.
    let layer = MetricsLayer::http(recorder.collector()).route(|request| {
        request
            .extensions
            .get::<MatchedPath>()
            .map(|path| path.as_str().to_owned())
    });
    let app = Router::new()
        .route("/users/{id}", get(|| async { "a user" }))
        .layer(layer);

    // Two requests, straight into the router (an application serves it with
    // `axum::serve`).
    for path in ["/users/1", "/users/2"] {
        let request = http::Request::get(path).body(axum::body::Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        // The duration is recorded when the body ends: read it.
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
        println!("# {path}: {}", String::from_utf8_lossy(&body));
    }
    for line in recorder.render().lines().filter(|l| l.starts_with("http_")) {
        println!("{line}");
    }
    Ok(())
}
