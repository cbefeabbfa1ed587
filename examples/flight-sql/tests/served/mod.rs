//! A tonic server under `MetricsLayer::grpc` on 127.0.0.1:0, recording into a pipeline of
//! its own, for the tests of the gRPC layer: its address, scrapes (waiting, bounded, for a
//! condition), and a graceful stop.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use porter_metrics::testing::Exposition;
use porter_metrics::tower::{Grpc, MetricsLayer};
use porter_metrics::{LocalRecorder, PrometheusCollector};

/// The server layer of these tests.
pub type Layer = MetricsLayer<PrometheusCollector, Grpc>;

/// See the module documentation.
pub struct Served {
    pub recorder: LocalRecorder,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Serves `routes` under the layer `configure` makes of one recording into `recorder`.
    pub async fn start(
        recorder: LocalRecorder,
        configure: impl FnOnce(Layer) -> Layer,
        routes: tonic::service::Routes,
    ) -> Self {
        let layer = configure(MetricsLayer::grpc(recorder.collector()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            tonic::transport::Server::builder()
                .layer(layer)
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
                .expect("the server runs");
        });
        Self {
            recorder,
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// A channel to the server.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect")
    }

    pub fn scrape(&self) -> Exposition {
        Exposition::parse(&self.recorder.render()).expect("a valid exposition")
    }

    /// Waits (at most 10 s) until `ready` holds for a scrape; returns that scrape.
    pub async fn scrape_when(&self, ready: impl Fn(&Exposition) -> bool) -> Exposition {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let scrape = self.scrape();
            if ready(&scrape) || Instant::now() > deadline {
                return scrape;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("the server task ends");
    }
}
