//! The catalog that generic Flight SQL clients (JDBC and ADBC drivers, DBeaver, ...) browse
//! before any query: one catalog, one schema, the server's tables, their one table type,
//! and the server's `SqlInfo`.
//!
//! Every answer is built by arrow-flight's `sql::metadata` builders, which also apply the
//! filters as the Flight SQL specification says: the catalog is matched exactly (an empty
//! string matches the tables without a catalog, so none here), the schema and table name
//! patterns are SQL `LIKE` patterns (`%` any substring, `_` any one character), and a
//! non-empty list of table types keeps the tables of those types only.
//!
//! ```
//! use arrow_flight::sql::CommandGetTables;
//! use porter_flight_sql::catalog;
//! use porter_flight_sql::service::orders_schema;
//!
//! let command = CommandGetTables {
//!     table_name_filter_pattern: Some("ord%".into()),
//!     ..Default::default()
//! };
//! let batch = catalog::tables(command, [("orders", &*orders_schema())]).unwrap();
//! assert_eq!(batch.num_rows(), 1);
//! ```

use arrow_array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{GetCatalogsBuilder, SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, SqlInfo,
};
use arrow_schema::Schema;

/// The one catalog.
pub const CATALOG: &str = "porter";
/// The one schema of [`CATALOG`].
pub const DB_SCHEMA: &str = "public";
/// The type of every table.
pub const TABLE_TYPE: &str = "TABLE";
/// `SqlInfo::FlightSqlServerName`.
pub const SERVER_NAME: &str = "porter-flight-sql";
/// `SqlInfo::FlightSqlServerVersion`: the example crate's version.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// `SqlInfo::FlightSqlServerReadOnly`: the server ingests (`DoPut`), so it is not.
pub const SERVER_READ_ONLY: bool = false;

/// The answer to `CommandGetCatalogs`.
///
/// # Errors
/// An Arrow error building the batch (none is expected).
pub fn catalogs(_command: CommandGetCatalogs) -> Result<RecordBatch, FlightError> {
    let mut builder = GetCatalogsBuilder::new();
    builder.append(CATALOG);
    builder.build()
}

/// The answer to `CommandGetDbSchemas`, filtered by its catalog and schema pattern.
///
/// # Errors
/// An Arrow error building or filtering the batch.
pub fn db_schemas(command: CommandGetDbSchemas) -> Result<RecordBatch, FlightError> {
    let mut builder = command.into_builder();
    builder.append(CATALOG, DB_SCHEMA);
    builder.build()
}

/// The answer to `CommandGetTables` over `tables` (name, schema), filtered by its catalog,
/// schema pattern, table name pattern and table types; with each table's Arrow schema
/// (IPC-encoded) when `include_schema` is set.
///
/// # Errors
/// An Arrow error building or filtering the batch.
pub fn tables<'a>(
    command: CommandGetTables,
    tables: impl IntoIterator<Item = (&'a str, &'a Schema)>,
) -> Result<RecordBatch, FlightError> {
    let mut builder = command.into_builder();
    for (name, schema) in tables {
        builder.append(CATALOG, DB_SCHEMA, name, TABLE_TYPE, schema)?;
    }
    builder.build()
}

/// The answer to `CommandGetTableTypes`.
///
/// # Errors
/// An Arrow error building the batch (none is expected).
pub fn table_types(command: CommandGetTableTypes) -> Result<RecordBatch, FlightError> {
    let mut builder = command.into_builder();
    builder.append(TABLE_TYPE);
    builder.build()
}

/// The server's `SqlInfo`: its name, version and read-only flag.
///
/// # Errors
/// An Arrow error building the table (none is expected).
pub fn sql_info_data() -> Result<SqlInfoData, FlightError> {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, SERVER_NAME);
    builder.append(SqlInfo::FlightSqlServerVersion, SERVER_VERSION);
    builder.append(SqlInfo::FlightSqlServerReadOnly, SERVER_READ_ONLY);
    builder.build()
}

/// The answer to `CommandGetSqlInfo` from `data`: the infos it asks for, all of them when
/// it asks for none. An info the server does not know is left out.
///
/// # Errors
/// An Arrow error filtering the table.
pub fn sql_info(
    command: CommandGetSqlInfo,
    data: &SqlInfoData,
) -> Result<RecordBatch, FlightError> {
    command.into_builder(data).build()
}
