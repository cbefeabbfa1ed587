//! The Flight SQL example in process, for the tests that run it against real servers: a
//! standalone metrics server (native latency histograms, process and runtime metrics, as
//! the example binary has) and the Flight SQL server recording into it.
#![allow(dead_code)]

use std::net::SocketAddr;

use porter_flight_sql::{run_load, serve, LoadConfig, Stop, Tally, Telemetry};
use porter_metrics::testing::Exposition;
use porter_metrics::{Builder, MetricsServer};
use tokio::net::TcpListener;

use super::common;

/// A standalone metrics server and the Flight SQL server recording into it.
pub struct InProcess {
    pub metrics: MetricsServer,
    pub flight: SocketAddr,
    pub stop: tokio::sync::oneshot::Sender<()>,
}

/// The example in process, as its binary configures it.
pub async fn in_process() -> InProcess {
    in_process_with(|builder| builder).await
}

/// The same, with more settings (push targets, say).
pub async fn in_process_with(more: impl FnOnce(Builder) -> Builder) -> InProcess {
    let builder = MetricsServer::builder()
        .standalone()
        .native_histograms_for_metric(
            porter_metrics::Matcher::Suffix("_seconds".into()),
            porter_metrics::NativeHistograms::default(),
        )
        .expect("valid settings")
        .process_metrics()
        .runtime_metrics(&tokio::runtime::Handle::current());
    let metrics = more(builder).build("127.0.0.1:0");
    metrics.start().expect("the metrics server starts");
    let recorder = metrics.recorder().expect("standalone");
    let telemetry = Telemetry::new(metrics.collector()).with_recorder(recorder);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let flight = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, telemetry, async {
        let _ = stopped.await;
    }));
    InProcess {
        metrics,
        flight,
        stop,
    }
}

impl InProcess {
    pub fn scrape(&self) -> Exposition {
        let addr = self.metrics.local_addr().expect("serving");
        Exposition::parse(&common::scrape(addr)).expect("a valid exposition")
    }

    /// A bounded load whose clients record their `grpc_client_*` series here too.
    pub async fn load(&self, requests: u64) -> Tally {
        let config = LoadConfig {
            telemetry: Some(Telemetry::new(self.metrics.collector())),
            ..LoadConfig::default()
        };
        run_load(self.flight, config, Stop::After(requests))
            .await
            .expect("the load generator connects")
    }
}
