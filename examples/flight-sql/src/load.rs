//! The load generator: arrow-flight's [`FlightSqlServiceClient`] over loopback, a few
//! concurrent clients sending a realistic mix, each tallying every RPC as it saw it.
//!
//! | share | operation | RPCs (expected status) |
//! |---|---|---|
//! | 25% | statement query of `orders` or `customers` | `GetFlightInfo`, `DoGet` per endpoint |
//! | 5% | catalog browse, as a SQL tool does first: catalogs, schemas, tables (with schemas), table types | `GetFlightInfo`, `DoGet` of each |
//! | 15% | prepared statement | `DoAction` (create), `GetFlightInfo`, `DoGet`, `DoAction` (close) |
//! | 15% | ingest of 5 orders | `DoPut` |
//! | 10% | query of an unknown table | `GetFlightInfo` (`NOT_FOUND`) |
//! | 10% | bad SQL | `GetFlightInfo` (`INVALID_ARGUMENT`) |
//! | 5% | prepared statement of an unknown table | `DoAction` (`NOT_FOUND`) |
//! | 5% | ingest into an unknown table | `DoPut` (`NOT_FOUND`) |
//! | 7% | handshake | `Handshake` |
//! | 3% | handshake with a wrong password | `Handshake` (`UNAUTHENTICATED`) |
//!
//! Every client's channel is under porter-metrics' client layer
//! ([`MetricsLayer::grpc_client`]), recording the `grpc_client_*` series through
//! [`LoadConfig::telemetry`]. arrow-flight's client reads the first message of a `DoPut`
//! answer (the ingest's result) and of a `DoAction` answer, or none (closing a prepared
//! statement), and drops the stream before its status: those calls end `Canceled` on the
//! client side, whatever the server answered.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, CommandStatementIngest};
use arrow_flight::{FlightInfo, HandshakeRequest};
use base64::prelude::{Engine, BASE64_STANDARD};
use futures::{stream, TryStreamExt};
use porter_metrics::tower::MetricsLayer;
use porter_metrics::{Collector, NoopCollector};
use tokio::sync::watch;
use tonic::metadata::MetadataValue;
use tonic::transport::Endpoint;

use crate::service::{orders, PASSWORD, USERNAME};
use crate::{code_name, flight_grpc_types, instrument_channel, MeteredChannel, Telemetry};

type Client = FlightSqlServiceClient<MeteredChannel<ClientCollector>>;

/// The telemetry's collector, behind a type of its own: with `Arc<dyn Collector>` itself
/// as the layer's collector, rustc cannot prove the client tasks `Send` (its `'static`
/// object lifetime is lost inside the async state machines).
#[derive(Clone)]
struct ClientCollector(Arc<dyn Collector>);

impl Collector for ClientCollector {
    fn increment_counter(&self, name: &str, labels: &[&str]) {
        self.0.increment_counter(name, labels);
    }
    fn record_histogram(&self, name: &str, value: f64, labels: &[&str]) {
        self.0.record_histogram(name, value, labels);
    }
    fn record_gauge(&self, name: &str, value: f64, labels: &[&str]) {
        self.0.record_gauge(name, value, labels);
    }
    fn start_timer(&self, name: &str) -> porter_metrics::Timer {
        self.0.start_timer(name)
    }
    fn add_to_gauge(&self, name: &str, delta: f64, labels: &[&str]) {
        self.0.add_to_gauge(name, delta, labels);
    }
}

/// When the load generator stops. An operation under way (a few RPCs) always finishes.
#[derive(Debug)]
pub enum Stop {
    /// Once this many RPCs were sent, all clients together.
    After(u64),
    /// Once the value is `true`, or its sender is dropped.
    Signal(watch::Receiver<bool>),
}

/// How the load generator runs.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Concurrent clients, each with a connection of its own.
    pub clients: usize,
    /// Pause between one client's operations (zero: as fast as the server answers).
    pub pause: Duration,
    /// Seed of the (deterministic) choice of operations.
    pub seed: u64,
    /// Where the clients' `grpc_client_*` series go (nowhere without it).
    pub telemetry: Option<Telemetry>,
}

impl Default for LoadConfig {
    /// Four clients, 10 ms between operations.
    fn default() -> Self {
        Self {
            clients: 4,
            pause: Duration::from_millis(10),
            seed: 1,
            telemetry: None,
        }
    }
}

/// What the clients saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// RPCs by `(method, status)`, status spelled by [`code_name`] (`UNKNOWN` for a client
    /// error without a gRPC status).
    pub requests: BTreeMap<(&'static str, &'static str), u64>,
    /// Rows received by `DoGet`.
    pub rows_received: u64,
    /// Rows the server said it ingested.
    pub rows_ingested: u64,
}

impl Tally {
    /// RPCs sent, every method and status.
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// RPCs of `method` that ended with `status`.
    pub fn count(&self, method: &str, status: &str) -> u64 {
        let mut all = self.requests.iter();
        let found = all.find(|((m, s), _)| *m == method && *s == status);
        found.map_or(0, |(_, n)| *n)
    }

    fn merge(&mut self, other: Tally) {
        for (key, n) in other.requests {
            *self.requests.entry(key).or_default() += n;
        }
        self.rows_received += other.rows_received;
        self.rows_ingested += other.rows_ingested;
    }

    /// Counts one RPC of `method` and gives its value back if it succeeded.
    fn outcome<T>(&mut self, method: &'static str, result: Result<T, FlightError>) -> Option<T> {
        let status = match &result {
            Ok(_) => "OK",
            Err(FlightError::Tonic(status)) => code_name(status.code()),
            Err(_) => "UNKNOWN",
        };
        *self.requests.entry((method, status)).or_default() += 1;
        result.ok()
    }
}

/// Runs the load against the Flight SQL server at `addr` until `stop`, and returns what
/// the clients saw.
///
/// # Errors
/// A client could not connect.
pub async fn run_load(
    addr: SocketAddr,
    config: LoadConfig,
    stop: Stop,
) -> Result<Tally, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?;
    let collector = ClientCollector(match &config.telemetry {
        Some(telemetry) => telemetry.collector().clone(),
        None => Arc::new(NoopCollector),
    });
    let layer = MetricsLayer::grpc_client(collector).grpc_types(flight_grpc_types);
    let sent = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for index in 0..config.clients.max(1) {
        let mut worker = Worker {
            client: FlightSqlServiceClient::new(instrument_channel(
                endpoint.connect().await?,
                &layer,
            )),
            rng: config
                .seed
                .wrapping_add(index as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                | 1,
            next_order: 1_000_000 * (index as i64 + 1),
            tally: Tally::default(),
        };
        let (pause, sent) = (config.pause, sent.clone());
        let stop = match &stop {
            Stop::After(limit) => Stop::After(*limit),
            Stop::Signal(signal) => Stop::Signal(signal.clone()),
        };
        clients.push(tokio::spawn(async move {
            while !stopped(&stop, &sent) {
                let before = worker.tally.total();
                worker.step().await;
                sent.fetch_add(worker.tally.total() - before, Ordering::SeqCst);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            worker.tally
        }));
    }
    let mut tally = Tally::default();
    for client in clients {
        // A client task panics only on a bug; its tally is lost then, and the test says so.
        if let Ok(client_tally) = client.await {
            tally.merge(client_tally);
        }
    }
    Ok(tally)
}

fn stopped(stop: &Stop, sent: &AtomicU64) -> bool {
    match stop {
        Stop::After(limit) => sent.load(Ordering::SeqCst) >= *limit,
        Stop::Signal(signal) => *signal.borrow() || signal.has_changed().is_err(),
    }
}

/// One client: its connection, its random choices, what it saw.
struct Worker {
    client: Client,
    rng: u64,
    next_order: i64,
    tally: Tally,
}

impl Worker {
    /// xorshift64: uniform enough in `0..n` for a load mix.
    fn below(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// One operation of the mix (see the module documentation).
    async fn step(&mut self) {
        let table = self.pick(&["orders", "customers"]);
        let unknown = self.pick(&["lineitem", "nation", "suppliers"]);
        let limit = 1 + self.below(50);
        match self.below(100) {
            0..25 => {
                self.query(format!("SELECT * FROM {table} LIMIT {limit}"))
                    .await
            }
            25..30 => self.browse().await,
            30..45 => self.prepared(format!("select * from {table}")).await,
            45..60 => self.ingest("orders").await,
            60..70 => self.query(format!("SELECT * FROM {unknown}")).await,
            70..80 => {
                let bad = [
                    "SELEC * FORM orders",
                    "DROP TABLE orders",
                    "SELECT id FROM orders",
                ];
                let sql = self.pick(&bad).to_owned();
                self.query(sql).await;
            }
            80..85 => self.prepared(format!("SELECT * FROM {unknown}")).await,
            85..90 => self.ingest(unknown).await,
            90..97 => self.handshake(PASSWORD).await,
            _ => self.handshake("wrong").await,
        }
    }

    async fn query(&mut self, sql: String) {
        let info = self.client.execute(sql, None).await;
        if let Some(info) = self.tally.outcome("GetFlightInfo", info) {
            self.fetch(info).await;
        }
    }

    /// `DoGet` of every endpoint, reading every batch.
    async fn fetch(&mut self, info: FlightInfo) {
        for ticket in info.endpoint.into_iter().filter_map(|e| e.ticket) {
            let client = &mut self.client;
            let rows = async move {
                let mut batches = client.do_get(ticket).await?;
                let mut rows = 0;
                while let Some(batch) = batches.try_next().await? {
                    rows += batch.num_rows() as u64;
                }
                Ok::<_, FlightError>(rows)
            };
            if let Some(rows) = self.tally.outcome("DoGet", rows.await) {
                self.tally.rows_received += rows;
            }
        }
    }

    /// What a SQL tool asks before any query: the catalogs, the schemas of one, its tables
    /// with their Arrow schemas, and the table types; each read back with `DoGet`.
    async fn browse(&mut self) {
        let catalogs = self.client.get_catalogs().await;
        if let Some(info) = self.tally.outcome("GetFlightInfo", catalogs) {
            self.fetch(info).await;
        }
        let command = CommandGetDbSchemas {
            catalog: Some(crate::catalog::CATALOG.to_owned()),
            db_schema_filter_pattern: None,
        };
        let schemas = self.client.get_db_schemas(command).await;
        if let Some(info) = self.tally.outcome("GetFlightInfo", schemas) {
            self.fetch(info).await;
        }
        let command = CommandGetTables {
            catalog: Some(crate::catalog::CATALOG.to_owned()),
            db_schema_filter_pattern: Some("%".to_owned()),
            table_name_filter_pattern: Some("%".to_owned()),
            table_types: Vec::new(),
            include_schema: true,
        };
        let tables = self.client.get_tables(command).await;
        if let Some(info) = self.tally.outcome("GetFlightInfo", tables) {
            self.fetch(info).await;
        }
        let types = self.client.get_table_types().await;
        if let Some(info) = self.tally.outcome("GetFlightInfo", types) {
            self.fetch(info).await;
        }
    }

    async fn prepared(&mut self, sql: String) {
        let prepared = self.client.prepare(sql, None).await;
        let Some(mut statement) = self.tally.outcome("DoAction", prepared) else {
            return;
        };
        if let Some(info) = self
            .tally
            .outcome("GetFlightInfo", statement.execute().await)
        {
            self.fetch(info).await;
        }
        self.tally.outcome("DoAction", statement.close().await);
    }

    async fn ingest(&mut self, table: &str) {
        let batch = orders(self.next_order, 5);
        self.next_order += 5;
        let command = CommandStatementIngest {
            table: table.to_owned(),
            table_definition_options: None,
            schema: None,
            catalog: None,
            temporary: false,
            transaction_id: None,
            options: HashMap::new(),
        };
        let batches = stream::iter([Ok(batch)]);
        let ingested = self.client.execute_ingest(command, batches).await;
        if let Some(rows) = self.tally.outcome("DoPut", ingested) {
            self.tally.rows_ingested += u64::try_from(rows).unwrap_or_default();
        }
    }

    /// A basic-auth handshake, through the generated client: arrow-flight's
    /// `FlightSqlServiceClient::handshake` turns the status into a string.
    async fn handshake(&mut self, password: &str) {
        let credentials = BASE64_STANDARD.encode(format!("{USERNAME}:{password}"));
        let Ok(authorization) = MetadataValue::try_from(format!("Basic {credentials}")) else {
            return;
        };
        let mut request = tonic::Request::new(stream::iter([HandshakeRequest::default()]));
        request
            .metadata_mut()
            .insert("authorization", authorization);
        let client = self.client.inner_mut();
        let result = async move {
            let mut responses = client.handshake(request).await?.into_inner();
            while responses.message().await?.is_some() {}
            Ok::<_, FlightError>(())
        };
        self.tally.outcome("Handshake", result.await);
    }
}
