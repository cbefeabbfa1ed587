//! The Flight SQL service: two in-memory tables, a tiny SQL dialect, prepared statements,
//! bulk ingest, and the domain metrics recorded around every handler.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::SqlInfoData;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, Command, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementIngest, CommandStatementQuery, DoPutUpdateResult, ProstMessageExt,
    TicketStatementQuery,
};
use arrow_flight::utils::batches_to_flight_data;
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use arrow_ipc::writer::IpcWriteOptions;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use base64::prelude::{Engine, BASE64_STANDARD};
use futures::{stream, Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::catalog;
use crate::{
    code_name, Telemetry, BYTES_SENT, CACHE_ENTRIES, ERRORS, HANDLER_DURATION, IN_FLIGHT,
    QUERY_DURATION, REQUESTS, REQUEST_DURATION,
};

/// The user name `Handshake` accepts (basic auth).
pub const USERNAME: &str = "porter";
/// The password `Handshake` accepts.
pub const PASSWORD: &str = "flight";
/// The bearer token `Handshake` returns. The other calls do not ask for it: this is an
/// example of instrumentation, not of security.
const TOKEN: &str = "porter-flight-sql-example";
/// Most rows a table keeps: ingests past it drop the oldest batches.
pub const MAX_TABLE_ROWS: usize = 10_000;
/// Most prepared statements open at once.
pub const MAX_PREPARED_STATEMENTS: usize = 1_024;

type HandshakeStream = Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;
type DoGetStream = <InMemoryService as FlightService>::DoGetStream;

/// A parsed query of the only SQL this server speaks: `SELECT * FROM <table> [LIMIT n]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The table, lower case.
    pub table: String,
    /// At most this many rows.
    pub limit: Option<usize>,
}

impl Query {
    /// Parses `sql` (keywords in any case, an optional trailing `;`).
    ///
    /// ```
    /// use porter_flight_sql::service::Query;
    ///
    /// let query = Query::parse("select * from Orders limit 5;").unwrap();
    /// assert_eq!((query.table.as_str(), query.limit), ("orders", Some(5)));
    /// assert_eq!(Query::parse("DROP TABLE orders").unwrap_err().code(), tonic::Code::InvalidArgument);
    /// ```
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for anything else.
    pub fn parse(sql: &str) -> Result<Self, Status> {
        let bad = || {
            Status::invalid_argument(format!(
                "unsupported SQL {sql:.100?}: expected SELECT * FROM <table> [LIMIT n]"
            ))
        };
        let words: Vec<&str> = sql
            .trim()
            .trim_end_matches(';')
            .split_whitespace()
            .collect();
        let [select, "*", from, table, rest @ ..] = words.as_slice() else {
            return Err(bad());
        };
        let identifier = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !select.eq_ignore_ascii_case("select")
            || !from.eq_ignore_ascii_case("from")
            || !identifier(table)
        {
            return Err(bad());
        }
        let limit = match rest {
            [] => None,
            [limit, n] if limit.eq_ignore_ascii_case("limit") => {
                Some(n.parse().map_err(|_| bad())?)
            }
            _ => return Err(bad()),
        };
        Ok(Self {
            table: table.to_ascii_lowercase(),
            limit,
        })
    }
}

/// The schema of the `orders` table.
pub fn orders_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("status", DataType::Utf8, false),
    ]))
}

/// `rows` made-up orders numbered from `first_id`: what the server starts with, and what
/// the load generator ingests.
pub fn orders(first_id: i64, rows: usize) -> RecordBatch {
    const STATUSES: [&str; 4] = ["new", "paid", "shipped", "delivered"];
    let ids: Vec<i64> = (first_id..).take(rows).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            ids.iter().map(|id| 1 + id % 20),
        )),
        Arc::new(Float64Array::from_iter_values(
            ids.iter().map(|id| 5.0 + (id * 37 % 1000) as f64 / 10.0),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|id| STATUSES[id.rem_euclid(4) as usize]),
        )),
    ];
    let columns = [vec![Arc::new(Int64Array::from(ids)) as ArrayRef], columns].concat();
    RecordBatch::try_new(orders_schema(), columns).expect("the columns match the schema")
}

fn customers() -> RecordBatch {
    const COUNTRIES: [&str; 5] = ["FR", "DE", "JP", "BR", "US"];
    let schema = Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(1..=20)),
        Arc::new(StringArray::from_iter_values(
            (1..=20).map(|i| format!("customer-{i:02}")),
        )),
        Arc::new(StringArray::from_iter_values(
            (0..20).map(|i| COUNTRIES[i % 5]),
        )),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("the columns match the schema")
}

/// One in-memory table.
struct Table {
    schema: SchemaRef,
    batches: VecDeque<RecordBatch>,
    rows: usize,
}

impl Table {
    fn new(batch: RecordBatch) -> Self {
        Self {
            schema: batch.schema(),
            rows: batch.num_rows(),
            batches: VecDeque::from([batch]),
        }
    }
}

/// A handler's error: the status to return and, for an unknown table, its name (a label of
/// `flight_errors_total`).
struct Failure {
    status: Status,
    table: Option<String>,
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Self {
            status,
            table: None,
        }
    }
}

impl Failure {
    fn unknown_table(table: &str) -> Self {
        Self {
            status: Status::not_found(format!("table {table:?} not found")),
            table: Some(table.to_owned()),
        }
    }
}

fn internal(error: impl std::fmt::Display) -> Failure {
    Status::internal(error.to_string()).into()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps `flight_requests_in_flight` up to date while a handler runs.
struct InFlight<'a>(&'a InMemoryService);

impl<'a> InFlight<'a> {
    fn enter(service: &'a InMemoryService) -> Self {
        service.in_flight.fetch_add(1, Ordering::SeqCst);
        service.record_in_flight();
        Self(service)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.record_in_flight();
    }
}

/// A Flight SQL service over the in-memory tables `orders` (100 rows to start with) and
/// `customers` (20 rows); see the crate documentation for what it records.
pub struct InMemoryService {
    telemetry: Telemetry,
    tables: RwLock<HashMap<String, Table>>,
    statements: Mutex<HashMap<u64, Query>>,
    next_handle: AtomicU64,
    in_flight: AtomicI64,
    sql_info: Result<SqlInfoData, String>,
}

impl std::fmt::Debug for InMemoryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryService")
            .field("telemetry", &self.telemetry)
            .finish_non_exhaustive()
    }
}

impl InMemoryService {
    /// A service with fresh tables, recording through `telemetry`; describes its metrics.
    pub fn new(telemetry: Telemetry) -> Self {
        telemetry.with_macros(|| {
            use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
            describe_counter!(REQUESTS, "Flight requests, by method and status.");
            describe_counter!(ERRORS, "Flight requests that failed, by code.");
            describe_histogram!(
                REQUEST_DURATION,
                Unit::Seconds,
                "Time in Flight handlers, by method."
            );
            describe_histogram!(
                QUERY_DURATION,
                Unit::Seconds,
                "Time executing queries and ingests."
            );
            describe_histogram!(HANDLER_DURATION, Unit::Seconds, "Time in Flight handlers.");
            describe_gauge!(IN_FLIGHT, "Flight requests being handled.");
            describe_counter!(
                BYTES_SENT,
                Unit::Bytes,
                "Bytes of Flight responses, by method."
            );
            describe_gauge!(CACHE_ENTRIES, "Open prepared statements.");
        });
        let collector = telemetry.collector();
        collector.record_gauge(IN_FLIGHT, 0.0, &[]);
        collector.record_gauge(CACHE_ENTRIES, 0.0, &[]);
        let tables = HashMap::from([
            ("orders".to_owned(), Table::new(orders(1, 100))),
            ("customers".to_owned(), Table::new(customers())),
        ]);
        Self {
            telemetry,
            tables: RwLock::new(tables),
            statements: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            in_flight: AtomicI64::new(0),
            sql_info: catalog::sql_info_data().map_err(|e| e.to_string()),
        }
    }

    /// Records the in-flight count until the recorded value is the current one, so the
    /// gauge never stays stale when concurrent handlers record out of order.
    fn record_in_flight(&self) {
        loop {
            let now = self.in_flight.load(Ordering::SeqCst);
            self.telemetry
                .collector()
                .record_gauge(IN_FLIGHT, now as f64, &[]);
            if self.in_flight.load(Ordering::SeqCst) == now {
                break;
            }
        }
    }

    fn bytes_sent(&self, method: &'static str, bytes: usize) {
        self.telemetry.with_macros(|| {
            metrics::counter!(BYTES_SENT, "method" => method).increment(bytes as u64);
        });
    }

    /// Runs a handler's `work` and records the domain metrics around it.
    async fn observe<T>(
        &self,
        method: &'static str,
        work: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Status> {
        let collector = self.telemetry.collector();
        let _handler = collector.start_timer(HANDLER_DURATION);
        let _in_flight = InFlight::enter(self);
        let started = Instant::now();
        let result = work.await;
        let seconds = started.elapsed().as_secs_f64();
        collector.record_histogram(REQUEST_DURATION, seconds, &["method", method]);
        let status = match &result {
            Ok(_) => "OK",
            Err(failure) => {
                let code = code_name(failure.status.code());
                match (&failure.table, failure.status.code()) {
                    (_, Code::Unauthenticated) => {
                        collector.increment_counter(ERRORS, &["code", code])
                    }
                    (Some(table), _) => collector.increment_counter(
                        ERRORS,
                        &["method", method, "code", code, "table", table],
                    ),
                    (None, _) => {
                        collector.increment_counter(ERRORS, &["method", method, "code", code])
                    }
                }
                code
            }
        };
        collector.increment_counter(REQUESTS, &["method", method, "status", status]);
        result.map_err(|failure| failure.status)
    }

    /// Looks at the table `name`.
    fn lookup<T>(&self, name: &str, f: impl FnOnce(&Table) -> T) -> Result<T, Failure> {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        let table = tables
            .get(name)
            .ok_or_else(|| Failure::unknown_table(name))?;
        Ok(f(table))
    }

    /// The schema and row count a query will return.
    fn plan(&self, query: &Query) -> Result<(SchemaRef, usize), Failure> {
        self.lookup(&query.table, |table| {
            let rows = query
                .limit
                .map_or(table.rows, |limit| limit.min(table.rows));
            (table.schema.clone(), rows)
        })
    }

    /// Runs a query: the first `limit` rows of its table, encoded as Flight data.
    fn execute(&self, query: &Query) -> Result<Response<DoGetStream>, Failure> {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        let table = tables
            .get(&query.table)
            .ok_or_else(|| Failure::unknown_table(&query.table))?;
        let timer = self.telemetry.collector().start_timer(QUERY_DURATION);
        let mut left = query.limit.unwrap_or(usize::MAX);
        let mut batches = Vec::new();
        for batch in &table.batches {
            if left == 0 {
                break;
            }
            let take = left.min(batch.num_rows());
            batches.push(batch.slice(0, take));
            left -= take;
        }
        let data = batches_to_flight_data(&table.schema, &batches).map_err(internal)?;
        drop(tables);
        timer.stop();
        let bytes = data.iter().map(|d| d.data_header.len() + d.data_body.len());
        self.bytes_sent("DoGet", bytes.sum());
        Ok(Response::new(Box::pin(stream::iter(
            data.into_iter().map(Ok),
        ))))
    }

    /// A `FlightInfo` with one endpoint: `ticket`.
    fn flight_info(
        &self,
        query: &Query,
        ticket: impl ProstMessageExt,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Failure> {
        let (schema, rows) = self.plan(query)?;
        let ticket = Ticket::new(ticket.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(internal)?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(descriptor)
            .with_total_records(rows as i64)
            .with_ordered(true);
        self.bytes_sent("GetFlightInfo", info.encoded_len());
        Ok(Response::new(info))
    }

    /// The query of an open prepared statement.
    fn prepared(&self, handle: &[u8]) -> Result<Query, Failure> {
        let handle = <[u8; 8]>::try_from(handle).map(u64::from_be_bytes);
        let query = handle
            .ok()
            .and_then(|h| lock(&self.statements).get(&h).cloned());
        query.ok_or_else(|| Status::invalid_argument("unknown prepared statement handle").into())
    }

    fn record_statements(&self, statements: &HashMap<u64, Query>) {
        let open = statements.len() as f64;
        self.telemetry
            .collector()
            .record_gauge(CACHE_ENTRIES, open, &[]);
    }

    /// The tables' names and schemas, for the catalog, read under the lock and then let go.
    fn table_schemas(&self) -> Vec<(String, SchemaRef)> {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        let all = tables
            .iter()
            .map(|(name, t)| (name.clone(), t.schema.clone()));
        all.collect()
    }

    /// Answers a catalog command (`CommandGetTables`, ...) with the batch `answer` builds
    /// for it.
    fn catalog_batch<T: Clone>(
        &self,
        command: &T,
        answer: impl FnOnce(T, &[(String, SchemaRef)]) -> Result<RecordBatch, FlightError>,
    ) -> Result<RecordBatch, Failure> {
        let sql_tables = self.table_schemas();
        answer(command.clone(), &sql_tables).map_err(internal)
    }

    /// The `FlightInfo` of a catalog command: the schema and rows of its answer, and one
    /// endpoint whose ticket is the command itself (`DoGet` builds the answer again).
    fn catalog_info<T: ProstMessageExt + Clone>(
        &self,
        command: T,
        descriptor: FlightDescriptor,
        answer: impl FnOnce(T, &[(String, SchemaRef)]) -> Result<RecordBatch, FlightError>,
    ) -> Result<Response<FlightInfo>, Failure> {
        let batch = self.catalog_batch(&command, answer)?;
        let ticket = Ticket::new(command.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(&batch.schema())
            .map_err(internal)?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(descriptor)
            .with_total_records(batch.num_rows() as i64)
            .with_ordered(true);
        self.bytes_sent("GetFlightInfo", info.encoded_len());
        Ok(Response::new(info))
    }

    /// The `DoGet` of a catalog command's ticket: its answer, as Flight data.
    fn catalog_data<T: Clone>(
        &self,
        command: T,
        answer: impl FnOnce(T, &[(String, SchemaRef)]) -> Result<RecordBatch, FlightError>,
    ) -> Result<Response<DoGetStream>, Failure> {
        let batch = self.catalog_batch(&command, answer)?;
        let data = batches_to_flight_data(&batch.schema(), [&batch]).map_err(internal)?;
        let bytes = data.iter().map(|d| d.data_header.len() + d.data_body.len());
        self.bytes_sent("DoGet", bytes.sum());
        Ok(Response::new(Box::pin(stream::iter(
            data.into_iter().map(Ok),
        ))))
    }

    /// The `SqlInfo` answer to `command`.
    fn sql_info(&self, command: CommandGetSqlInfo) -> Result<RecordBatch, FlightError> {
        match &self.sql_info {
            Ok(data) => catalog::sql_info(command, data),
            Err(error) => Err(FlightError::ProtocolError(error.clone())),
        }
    }
}

/// `CommandGetTables` over the server's tables.
fn tables_answer(
    command: CommandGetTables,
    tables: &[(String, SchemaRef)],
) -> Result<RecordBatch, FlightError> {
    let tables = tables
        .iter()
        .map(|(name, schema)| (name.as_str(), &**schema));
    catalog::tables(command, tables)
}

/// The status of a failed ingest stream.
fn flight_status(error: FlightError) -> Failure {
    match error {
        FlightError::Tonic(status) => (*status).into(),
        other => Status::invalid_argument(other.to_string()).into(),
    }
}

#[tonic::async_trait]
impl FlightSqlService for InMemoryService {
    type FlightService = Self;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        self.observe("Handshake", async move {
            let expected = format!(
                "Basic {}",
                BASE64_STANDARD.encode(format!("{USERNAME}:{PASSWORD}"))
            );
            let given = request.metadata().get("authorization");
            if given.and_then(|value| value.to_str().ok()) != Some(expected.as_str()) {
                return Err(Status::unauthenticated("invalid credentials").into());
            }
            let answer = HandshakeResponse {
                protocol_version: 0,
                payload: TOKEN.into(),
            };
            let mut response: Response<HandshakeStream> =
                Response::new(Box::pin(stream::iter([Ok(answer)])));
            let bearer = MetadataValue::from_static("Bearer porter-flight-sql-example");
            response.metadata_mut().insert("authorization", bearer);
            Ok(response)
        })
        .await
    }

    async fn get_flight_info_statement(
        &self,
        command: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.observe("GetFlightInfo", async move {
            let query = Query::parse(&command.query)?;
            let ticket = TicketStatementQuery {
                statement_handle: command.query.into(),
            };
            self.flight_info(&query, ticket, request.into_inner())
        })
        .await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.observe("GetFlightInfo", async move {
            let query = self.prepared(&command.prepared_statement_handle)?;
            self.flight_info(&query, command, request.into_inner())
        })
        .await
    }

    async fn get_flight_info_fallback(
        &self,
        command: Command,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let unsupported = format!("unsupported command {}", command.type_url());
        let work = async move { Err(Status::unimplemented(unsupported).into()) };
        self.observe("GetFlightInfo", work).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.observe("DoGet", async move {
            let sql = std::str::from_utf8(&ticket.statement_handle)
                .map_err(|_| Status::invalid_argument("the ticket is not UTF-8 SQL"))?;
            self.execute(&Query::parse(sql)?)
        })
        .await
    }

    async fn do_get_prepared_statement(
        &self,
        command: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.observe("DoGet", async move {
            self.execute(&self.prepared(&command.prepared_statement_handle)?)
        })
        .await
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<DoGetStream>, Status> {
        let unsupported = format!("unsupported ticket {}", message.type_url);
        let work = async move { Err(Status::unimplemented(unsupported).into()) };
        self.observe("DoGet", work).await
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.observe("DoPut", async move {
            let name = command.table.to_ascii_lowercase();
            let schema = self.lookup(&name, |table| table.schema.clone())?;
            let data = request.into_inner().map_err(FlightError::from);
            let mut incoming = FlightRecordBatchStream::new_from_flight_data(data);
            let (mut batches, mut rows) = (Vec::new(), 0);
            while let Some(batch) = incoming.try_next().await.map_err(flight_status)? {
                rows += batch.num_rows();
                if rows > MAX_TABLE_ROWS {
                    let message = format!("an ingest holds at most {MAX_TABLE_ROWS} rows");
                    return Err(Status::resource_exhausted(message).into());
                }
                let names = batch.schema_ref().fields().iter().map(|f| f.name());
                if names.ne(schema.fields().iter().map(|f| f.name())) {
                    let message = format!("the rows do not match the columns of {name:?}");
                    return Err(Status::invalid_argument(message).into());
                }
                let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                batches.push(batch);
            }
            let timer = self.telemetry.collector().start_timer(QUERY_DURATION);
            let mut tables = self.tables.write().unwrap_or_else(PoisonError::into_inner);
            let table = tables
                .get_mut(&name)
                .ok_or_else(|| Failure::unknown_table(&name))?;
            table.rows += rows;
            table.batches.extend(batches);
            while table.rows > MAX_TABLE_ROWS {
                let Some(oldest) = table.batches.pop_front() else {
                    break;
                };
                table.rows -= oldest.num_rows();
            }
            drop(tables);
            timer.stop();
            let record_count = rows as i64;
            self.bytes_sent("DoPut", DoPutUpdateResult { record_count }.encoded_len());
            Ok(record_count)
        })
        .await
    }

    async fn do_put_fallback(
        &self,
        _request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        let unsupported = format!("unsupported command {}", message.type_url);
        let work = async move { Err(Status::unimplemented(unsupported).into()) };
        self.observe("DoPut", work).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        command: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.observe("DoAction", async move {
            let query = Query::parse(&command.query)?;
            let (schema, _) = self.plan(&query)?;
            let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
                .try_into()
                .map_err(internal)?;
            let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
            let mut statements = lock(&self.statements);
            if statements.len() >= MAX_PREPARED_STATEMENTS {
                let message = format!("at most {MAX_PREPARED_STATEMENTS} prepared statements");
                return Err(Status::resource_exhausted(message).into());
            }
            statements.insert(handle, query);
            self.record_statements(&statements);
            drop(statements);
            let result = ActionCreatePreparedStatementResult {
                prepared_statement_handle: handle.to_be_bytes().to_vec().into(),
                dataset_schema,
                parameter_schema: Default::default(),
            };
            self.bytes_sent("DoAction", result.as_any().encoded_len());
            Ok(result)
        })
        .await
    }

    async fn do_action_close_prepared_statement(
        &self,
        command: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        self.observe("DoAction", async move {
            let handle = <[u8; 8]>::try_from(&command.prepared_statement_handle[..]);
            let mut statements = lock(&self.statements);
            let removed = handle
                .ok()
                .and_then(|h| statements.remove(&u64::from_be_bytes(h)));
            self.record_statements(&statements);
            match removed {
                Some(_) => Ok(()),
                None => Err(Status::invalid_argument("unknown prepared statement handle").into()),
            }
        })
        .await
    }

    async fn get_flight_info_catalogs(
        &self,
        command: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let work = async move {
            self.catalog_info(command, request.into_inner(), |c, _| catalog::catalogs(c))
        };
        self.observe("GetFlightInfo", work).await
    }

    async fn get_flight_info_schemas(
        &self,
        command: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let work = async move {
            self.catalog_info(command, request.into_inner(), |c, _| catalog::db_schemas(c))
        };
        self.observe("GetFlightInfo", work).await
    }

    async fn get_flight_info_tables(
        &self,
        command: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let work = async move { self.catalog_info(command, request.into_inner(), tables_answer) };
        self.observe("GetFlightInfo", work).await
    }

    async fn get_flight_info_table_types(
        &self,
        command: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let work = async move {
            self.catalog_info(command, request.into_inner(), |c, _| {
                catalog::table_types(c)
            })
        };
        self.observe("GetFlightInfo", work).await
    }

    async fn get_flight_info_sql_info(
        &self,
        command: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let work = async move {
            self.catalog_info(command, request.into_inner(), |c, _| self.sql_info(c))
        };
        self.observe("GetFlightInfo", work).await
    }

    async fn do_get_catalogs(
        &self,
        command: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let work = async move { self.catalog_data(command, |c, _| catalog::catalogs(c)) };
        self.observe("DoGet", work).await
    }

    async fn do_get_schemas(
        &self,
        command: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let work = async move { self.catalog_data(command, |c, _| catalog::db_schemas(c)) };
        self.observe("DoGet", work).await
    }

    async fn do_get_tables(
        &self,
        command: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let work = async move { self.catalog_data(command, tables_answer) };
        self.observe("DoGet", work).await
    }

    async fn do_get_table_types(
        &self,
        command: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let work = async move { self.catalog_data(command, |c, _| catalog::table_types(c)) };
        self.observe("DoGet", work).await
    }

    async fn do_get_sql_info(
        &self,
        command: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let work = async move { self.catalog_data(command, |c, _| self.sql_info(c)) };
        self.observe("DoGet", work).await
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let unsupported = format!("unsupported action {:?}", request.get_ref().r#type);
        let work = async move { Err(Status::invalid_argument(unsupported).into()) };
        self.observe("DoAction", work).await
    }
}
