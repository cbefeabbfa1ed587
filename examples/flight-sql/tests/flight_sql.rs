//! The Flight SQL server under its load generator, checked through its scrape: what the
//! clients saw against what the handlers and porter-metrics' tower layer recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::CommandStatementIngest;
use futures::TryStreamExt;
use porter_flight_sql::service::orders;
use porter_flight_sql::{run_load, serve, LoadConfig, Stop, Tally, Telemetry};
use porter_metrics::testing::{Exposition, Sample};
use porter_metrics::{LocalRecorder, MetricsServer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The gRPC code of a failed call.
fn code<T>(result: Result<T, FlightError>) -> Option<tonic::Code> {
    match result {
        Err(FlightError::Tonic(status)) => Some(status.code()),
        _ => None,
    }
}

const SERVICE: &str = "arrow.flight.protocol.FlightService";
const METHODS: [(&str, &str); 5] = [
    ("Handshake", "bidi_stream"),
    ("GetFlightInfo", "unary"),
    ("DoGet", "server_stream"),
    ("DoPut", "bidi_stream"),
    ("DoAction", "server_stream"),
];

/// A Flight SQL server on a free loopback port, recording into `recorder`'s pipeline.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn start(metrics: &MetricsServer) -> Running {
    let recorder = metrics.recorder().expect("a standalone server");
    let telemetry = Telemetry::new(metrics.collector()).with_recorder(recorder);
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let task = tokio::spawn(serve(listener, telemetry, shutdown));
    Running { addr, stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let served = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        served
            .expect("shut down in time")
            .expect("no panic")
            .expect("served");
    }
}

fn label<'a>(sample: &'a Sample, key: &str) -> &'a str {
    let pair = sample.labels.iter().find(|(k, _)| k == key);
    pair.map_or("", |(_, v)| v.as_str())
}

fn series<'a>(scrape: &'a Exposition, name: &'a str) -> impl Iterator<Item = &'a Sample> {
    scrape.samples().iter().filter(move |s| s.name == name)
}

/// The scrape once the layer has seen the end of all `calls` (a call ends when its last
/// frame leaves the server, which can be a moment after the client is done with it).
async fn settled(recorder: &LocalRecorder, calls: u64) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        recorder.run_upkeep();
        let scrape = Exposition::parse(&recorder.render()).expect("a valid exposition");
        // The layer ends a call with two writes (the counter, then the histogram): wait
        // for both.
        let handled = scrape.sum("grpc_server_handled_total") as u64;
        let timed = scrape.sum("grpc_server_handling_seconds_count") as u64;
        if (handled, timed) == (calls, calls) || Instant::now() > deadline {
            return scrape;
        }
        // Polling, bounded by the deadline: the layer has no completion signal to wait on.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_agrees_with_what_the_clients_saw() {
    let metrics = MetricsServer::builder().standalone().build("127.0.0.1:0");
    metrics.start().expect("metrics server");
    let server = start(&metrics).await;

    let config = LoadConfig {
        clients: 3,
        pause: Duration::ZERO,
        seed: 7,
        telemetry: Some(Telemetry::new(metrics.collector())),
    };
    let load = run_load(server.addr, config, Stop::After(200));
    let tally: Tally = tokio::time::timeout(Duration::from_secs(60), load)
        .await
        .expect("the load ends in time")
        .expect("the clients connect");
    assert!(tally.total() >= 200, "{tally:?}");
    assert!(
        tally.rows_received > 0 && tally.rows_ingested > 0,
        "{tally:?}"
    );

    let scrape = settled(&metrics.recorder().expect("standalone"), tally.total()).await;

    // The handlers' own count, series by series, is what the clients saw.
    let recorded: BTreeMap<(String, String), u64> = series(&scrape, "flight_requests_total")
        .map(|s| {
            (
                (label(s, "method").into(), label(s, "status").into()),
                s.value as u64,
            )
        })
        .collect();
    let seen: BTreeMap<(String, String), u64> = tally
        .requests
        .iter()
        .map(|((method, status), n)| ((method.to_string(), status.to_string()), *n))
        .collect();
    assert_eq!(recorded, seen);
    for status in ["NOT_FOUND", "INVALID_ARGUMENT", "UNAUTHENTICATED"] {
        assert!(
            seen.keys().any(|(_, s)| s == status),
            "no {status}: {seen:?}"
        );
    }
    let failed: u64 = seen
        .iter()
        .filter(|((_, s), _)| s != "OK")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(scrape.sum("flight_errors_total") as u64, failed);

    // The layer saw every call start and end, with OK and error codes.
    let started = scrape.sum("grpc_server_started_total");
    let handled = scrape.sum("grpc_server_handled_total");
    assert_eq!(started, handled);
    assert_eq!(handled as u64, tally.total());
    let codes: Vec<&str> = series(&scrape, "grpc_server_handled_total")
        .map(|s| label(s, "grpc_code"))
        .collect();
    for code in ["OK", "NotFound", "InvalidArgument", "Unauthenticated"] {
        assert!(codes.contains(&code), "no {code} in {codes:?}");
    }
    let labels = |method, kind| {
        [
            "grpc_type",
            kind,
            "grpc_service",
            SERVICE,
            "grpc_method",
            method,
        ]
    };
    let do_get_sent = scrape.value(
        "grpc_server_msg_sent_total",
        &labels("DoGet", "server_stream"),
    );
    assert!(do_get_sent.unwrap_or(0.0) > 0.0, "no DoGet messages sent");

    // Per method: handled calls, handling-time observations, what the clients sent and
    // the handlers' duration histogram all count the same calls.
    for (method, kind) in METHODS {
        let handled: f64 = series(&scrape, "grpc_server_handled_total")
            .filter(|s| label(s, "grpc_method") == method && label(s, "grpc_type") == kind)
            .map(|s| s.value)
            .sum();
        let timed = scrape.histogram("grpc_server_handling_seconds", &labels(method, kind));
        let timed = timed.map_or(0, |h| h.count);
        let sent: u64 = seen
            .iter()
            .filter(|((m, _), _)| m == method)
            .map(|(_, n)| n)
            .sum();
        let durations = scrape.histogram("flight_request_duration_seconds", &["method", method]);
        assert_eq!((handled as u64, timed), (sent, sent), "{method}");
        assert_eq!(durations.map_or(0, |h| h.count), sent, "{method}");
    }

    // The clients' side of the same calls, from the client layer under the load generator.
    assert_eq!(
        scrape.sum("grpc_client_started_total") as u64,
        tally.total()
    );
    assert_eq!(
        scrape.sum("grpc_client_handled_total") as u64,
        tally.total()
    );
    let by_code = |name: &str, method: &str| -> BTreeMap<String, u64> {
        series(&scrape, name)
            .filter(|s| label(s, "grpc_method") == method)
            .map(|s| (label(s, "grpc_code").to_owned(), s.value as u64))
            .collect()
    };
    for (method, kind) in METHODS {
        let client = by_code("grpc_client_handled_total", method);
        let server = by_code("grpc_server_handled_total", method);
        let value = |name| scrape.value(name, &labels(method, kind)).unwrap_or(0.0);
        match method {
            // arrow-flight's client reads the first message of these answers (or none) and
            // drops the stream before its status: `Canceled` on the client side.
            "DoPut" | "DoAction" => {
                assert_eq!(
                    client.values().sum::<u64>(),
                    server.values().sum::<u64>(),
                    "{method}"
                );
                for (code, n) in client.iter().filter(|(code, _)| *code != "Canceled") {
                    assert!(server.get(code).is_some_and(|s| s >= n), "{method} {code}");
                }
            }
            _ => assert_eq!(client, server, "{method}"),
        }
        // What the server sent, the client received; the one request message of the
        // calls whose handler reads it, the server received.
        assert_eq!(
            value("grpc_client_msg_received_total"),
            value("grpc_server_msg_sent_total"),
            "{method}"
        );
        if matches!(method, "GetFlightInfo" | "DoGet" | "DoAction") {
            assert_eq!(
                value("grpc_client_msg_sent_total"),
                value("grpc_server_msg_received_total"),
                "{method}"
            );
        }
        let timed = scrape.histogram("grpc_client_handling_seconds", &labels(method, kind));
        assert_eq!(
            timed.map_or(0, |h| h.count),
            client.values().sum::<u64>(),
            "{method}"
        );
    }

    // The macro series reached the standalone pipeline; the gauges are back to rest.
    let bytes = scrape.value("flight_bytes_sent_total", &["method", "DoGet"]);
    assert!(bytes.unwrap_or(0.0) > 0.0, "no DoGet bytes");
    assert_eq!(scrape.value("flight_requests_in_flight", &[]), Some(0.0));
    assert_eq!(scrape.value("flight_result_cache_entries", &[]), Some(0.0));
    let handlers = scrape.histogram("flight_handler_duration_seconds", &[]);
    assert_eq!(handlers.map_or(0, |h| h.count), tally.total());

    server.stop().await;
    metrics.stop().expect("stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_their_grpc_status_and_ingests_are_read_back() {
    let metrics = MetricsServer::builder().standalone().build("127.0.0.1:0");
    metrics.start().expect("metrics server");
    let server = start(&metrics).await;
    let endpoint = format!("http://{}", server.addr);
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .expect("a valid URI")
        .connect()
        .await
        .expect("connect");
    let mut client = FlightSqlServiceClient::new(channel);

    let missing = client.execute("SELECT * FROM lineitem".into(), None).await;
    assert_eq!(code(missing), Some(tonic::Code::NotFound));
    let bad = client.execute("SELECT id FROM orders".into(), None).await;
    assert_eq!(code(bad), Some(tonic::Code::InvalidArgument));

    let info = client
        .execute("select * from orders".into(), None)
        .await
        .expect("a flight info");
    assert_eq!(info.total_records, 100);

    let ingest = CommandStatementIngest {
        table: "orders".into(),
        table_definition_options: None,
        schema: None,
        catalog: None,
        temporary: false,
        transaction_id: None,
        options: Default::default(),
    };
    let rows = futures::stream::iter([Ok(orders(5_000, 5))]);
    let ingested = client.execute_ingest(ingest.clone(), rows).await;
    assert_eq!(ingested.expect("ingested"), 5);
    let unknown = CommandStatementIngest {
        table: "nation".into(),
        ..ingest
    };
    let rows = futures::stream::iter([Ok(orders(6_000, 5))]);
    let refused = client.execute_ingest(unknown, rows).await;
    assert_eq!(code(refused), Some(tonic::Code::NotFound));

    let info = client
        .execute("SELECT * FROM orders".into(), None)
        .await
        .expect("a flight info");
    assert_eq!(info.total_records, 105);
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let batches: Vec<_> = client
        .do_get(ticket)
        .await
        .expect("a stream")
        .try_collect()
        .await
        .expect("every batch");
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids.len(), 105);
    assert_eq!(ids[100..], [5_000, 5_001, 5_002, 5_003, 5_004]);

    let recorder = metrics.recorder().expect("standalone");
    let errors = Exposition::parse(&recorder.render()).expect("valid");
    let refused = ["method", "DoPut", "code", "NOT_FOUND", "table", "nation"];
    assert_eq!(errors.value("flight_errors_total", &refused), Some(1.0));
    let not_found = [
        "method",
        "GetFlightInfo",
        "code",
        "NOT_FOUND",
        "table",
        "lineitem",
    ];
    assert_eq!(errors.value("flight_errors_total", &not_found), Some(1.0));
    let invalid = ["method", "GetFlightInfo", "code", "INVALID_ARGUMENT"];
    assert_eq!(errors.value("flight_errors_total", &invalid), Some(1.0));

    server.stop().await;
    metrics.stop().expect("stopped");
}

/// Every batch of every endpoint of `info`.
async fn read_all(
    client: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    info: arrow_flight::FlightInfo,
) -> Vec<arrow_array::RecordBatch> {
    let mut batches = Vec::new();
    for ticket in info.endpoint.into_iter().filter_map(|e| e.ticket) {
        let stream = client.do_get(ticket).await.expect("a stream");
        let read: Vec<_> = stream.try_collect().await.expect("every batch");
        batches.extend(read);
    }
    batches
}

/// The values of the string column `name` across `batches`.
fn strings(batches: &[arrow_array::RecordBatch], name: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name(name).expect("the column");
            let column = column.as_string::<i32>();
            column
                .iter()
                .map(|v| v.unwrap_or("").to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_client_browses_the_catalog_with_the_specs_filters() {
    use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
    use porter_flight_sql::catalog;

    let metrics = MetricsServer::builder().standalone().build("127.0.0.1:0");
    metrics.start().expect("metrics server");
    let server = start(&metrics).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connect");
    let mut client = FlightSqlServiceClient::new(channel);

    let info = client.get_catalogs().await.expect("catalogs");
    assert_eq!(info.total_records, 1);
    let batches = read_all(&mut client, info).await;
    assert_eq!(strings(&batches, "catalog_name"), ["porter"]);

    let types = client.get_table_types().await.expect("table types");
    let batches = read_all(&mut client, types).await;
    assert_eq!(strings(&batches, "table_type"), ["TABLE"]);

    // Schemas: the catalog is matched exactly ("" is "no catalog"), the pattern is LIKE.
    let cases = [
        (None, None, vec!["public"]),
        (Some("porter"), Some("pub%"), vec!["public"]),
        (Some("porter"), Some("p_blic"), vec!["public"]),
        (Some("porter"), Some("pub"), vec![]),
        (Some(""), None, vec![]),
        (Some("other"), None, vec![]),
    ];
    for (catalog, pattern, expected) in cases {
        let command = CommandGetDbSchemas {
            catalog: catalog.map(str::to_owned),
            db_schema_filter_pattern: pattern.map(str::to_owned),
        };
        let info = client.get_db_schemas(command).await.expect("schemas");
        let batches = read_all(&mut client, info).await;
        let names = strings(&batches, "db_schema_name");
        assert_eq!(names, expected, "catalog {catalog:?}, pattern {pattern:?}");
    }

    // Tables: every filter at once narrows, sorted by name; `include_schema` adds the
    // IPC-encoded Arrow schema of each table.
    let tables =
        |catalog: Option<&str>, schema: Option<&str>, name: Option<&str>, types: &[&str]| {
            CommandGetTables {
                catalog: catalog.map(str::to_owned),
                db_schema_filter_pattern: schema.map(str::to_owned),
                table_name_filter_pattern: name.map(str::to_owned),
                table_types: types.iter().map(|t| t.to_string()).collect(),
                include_schema: false,
            }
        };
    let cases = [
        (tables(None, None, None, &[]), vec!["customers", "orders"]),
        (
            tables(Some("porter"), Some("public"), Some("%s"), &["TABLE"]),
            vec!["customers", "orders"],
        ),
        (tables(None, None, Some("ord%"), &[]), vec!["orders"]),
        (tables(None, None, Some("_rders"), &[]), vec!["orders"]),
        (tables(None, None, Some("ORDERS"), &[]), vec![]),
        (tables(None, None, None, &["VIEW"]), vec![]),
        (
            tables(None, None, None, &["VIEW", "TABLE"]),
            vec!["customers", "orders"],
        ),
        (tables(None, Some("private"), None, &[]), vec![]),
        (tables(Some("other"), None, None, &[]), vec![]),
    ];
    for (command, expected) in cases {
        let described = format!("{command:?}");
        let info = client.get_tables(command).await.expect("tables");
        let batches = read_all(&mut client, info).await;
        assert_eq!(strings(&batches, "table_name"), expected, "{described}");
        assert!(batches
            .iter()
            .all(|b| b.column_by_name("table_schema").is_none()));
    }
    let with_schema = CommandGetTables {
        include_schema: true,
        ..tables(None, None, Some("orders"), &[])
    };
    let info = client.get_tables(with_schema).await.expect("tables");
    let batches = read_all(&mut client, info).await;
    assert_eq!(strings(&batches, "catalog_name"), ["porter"]);
    assert_eq!(strings(&batches, "db_schema_name"), ["public"]);
    assert_eq!(strings(&batches, "table_type"), ["TABLE"]);
    let encoded = batches[0]
        .column_by_name("table_schema")
        .expect("include_schema adds the schema")
        .as_binary::<i32>()
        .value(0)
        .to_vec();
    let schema = arrow_ipc::convert::try_schema_from_ipc_buffer(&encoded).expect("an IPC schema");
    assert_eq!(schema, *porter_flight_sql::service::orders_schema());

    // SqlInfo: the server's name, version and read-only flag, all or the ones asked for.
    let info = client
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .expect("sql info");
    let batches = read_all(&mut client, info).await;
    let names: Vec<u32> = batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("info_name").expect("info_name");
            column
                .as_primitive::<arrow_array::types::UInt32Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(
        names,
        [
            SqlInfo::FlightSqlServerName as u32,
            SqlInfo::FlightSqlServerReadOnly as u32
        ]
    );
    let values = batches[0]
        .column_by_name("value")
        .expect("value")
        .as_union();
    let name = values.value(0);
    assert_eq!(name.as_string::<i32>().value(0), catalog::SERVER_NAME);
    let read_only = values.value(1);
    assert!(!read_only.as_boolean().value(0));
    let info = client.get_sql_info(Vec::new()).await.expect("all sql info");
    assert_eq!(info.total_records, 3);
    let batches = read_all(&mut client, info).await;
    let values = batches[0]
        .column_by_name("value")
        .expect("value")
        .as_union();
    let strings_given: Vec<String> = (0..batches[0].num_rows())
        .map(|i| values.value(i))
        .filter_map(|v| v.as_string_opt::<i32>().map(|s| s.value(0).to_owned()))
        .collect();
    assert_eq!(
        strings_given,
        [catalog::SERVER_NAME, env!("CARGO_PKG_VERSION")]
    );

    // The handlers counted the browse like any other request.
    let recorder = metrics.recorder().expect("standalone");
    let scrape = Exposition::parse(&recorder.render()).expect("valid");
    let ok = scrape.value(
        "flight_requests_total",
        &["method", "GetFlightInfo", "status", "OK"],
    );
    let fetched = scrape.value(
        "flight_requests_total",
        &["method", "DoGet", "status", "OK"],
    );
    assert_eq!((ok, fetched), (Some(20.0), Some(20.0)));

    server.stop().await;
    metrics.stop().expect("stopped");
}

/// Made-up method paths, as an attacker without credentials sends them: each is counted,
/// under `unknown` labels, and none adds series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_method_paths_add_at_most_five_series_per_metric() {
    let metrics = MetricsServer::builder().standalone().build("127.0.0.1:0");
    let running = start(&metrics).await;
    let recorder = metrics.recorder().expect("standalone");
    let per_metric = |scrape: &Exposition| -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for s in scrape
            .samples()
            .iter()
            .filter(|s| s.name.starts_with("grpc_server_"))
        {
            *counts.entry(s.name.clone()).or_default() += 1;
        }
        counts
    };
    let before = per_metric(&Exposition::parse(&recorder.render()).expect("valid"));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = tonic::client::Grpc::new(channel);
    for i in 0..3000u32 {
        client.ready().await.expect("ready");
        let path = format!("/evil.S{}/M{i}{}", i % 13, "z".repeat((i % 40) as usize));
        let path = http::uri::PathAndQuery::try_from(path).expect("a path");
        let result = client
            .unary::<(), (), _>(
                tonic::Request::new(()),
                path,
                tonic_prost::ProstCodec::default(),
            )
            .await;
        assert_eq!(
            result.map(|_| ()).map_err(|s| s.code()),
            Err(tonic::Code::Unimplemented)
        );
    }
    let after = settled(&recorder, 3000).await;
    let after = per_metric(&after);
    for (name, n) in &after {
        let added = n - before.get(name).copied().unwrap_or(0);
        // A histogram's series is its buckets, sum and count lines.
        let lines = if name.ends_with("_bucket") { 5 * 12 } else { 5 };
        assert!(added <= lines, "{name}: {added} lines added");
    }
    assert!(after.contains_key("grpc_server_handled_total"), "{after:?}");
    running.stop().await;
}
