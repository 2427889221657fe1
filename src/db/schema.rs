//! Installs what hera-migrate needs, creating no table beyond the six.
//!
//! - **Owned**: the six tables are absent (or were created by us): create them
//!   idempotently, with the indexes we rely on.
//! - **Attached**: the six tables already exist (a real HERA database): create
//!   and alter nothing; check that every column we use exists with a
//!   compatible type, and install only our functions.
//!
//! The schema version and mode are recorded in a function,
//! `hera_migrate_schema_info()`, not in a table.
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use super::{
    adapt::Adaptation,
    collisions,
    contract::{self, ContractViolation},
};

/// Bump when the installed SQL changes shape.
pub const SCHEMA_VERSION: i32 = 2;

/// The six tables, in creation order.
pub const SACRED_SIX: [&str; 6] = [
    "core_organizations",
    "core_entities",
    "core_dynamic_data",
    "core_relationships",
    "universal_transactions",
    "universal_transaction_lines",
];

/// Serializes installs of concurrent servers (an arbitrary, fixed key).
const INSTALL_LOCK_KEY: i64 = 0x4845_5241_4d49_4752; // "HERAMIGR"

const SMART_CODE_FUNCTIONS: &str = include_str!("../../sql/functions/smart_code.sql");
const TABLES: &str = include_str!("../../sql/schema/tables.sql");
const INDEXES: &str = include_str!("../../sql/schema/indexes.sql");
const ROW_SECURITY: &str = include_str!("../../sql/schema/row_security.sql");

/// The role the service works as in an owned schema (row-level security applies to it).
pub const SERVICE_ROLE: &str = "hera_migrate_app";
/// Signatures of our earlier versions, dropped before the functions are
/// (re)created.
const RETIRED: &str = include_str!("../../sql/functions/retired.sql");
/// Functions whose bodies read the tables: installed after them, in this
/// order (a SQL-language function's body may only name what exists).
const TABLE_FUNCTIONS: &[&str] = &[
    include_str!("../../sql/functions/candidate.sql"),
    include_str!("../../sql/functions/periods.sql"),
    include_str!("../../sql/functions/rules.sql"),
    include_str!("../../sql/functions/trial_balance.sql"),
    include_str!("../../sql/functions/isolate.sql"),
    include_str!("../../sql/functions/writes.sql"),
    include_str!("../../sql/functions/audit_chain.sql"),
    include_str!("../../sql/functions/events.sql"),
    include_str!("../../sql/functions/run.sql"),
    include_str!("../../sql/functions/validation.sql"),
    include_str!("../../sql/functions/operations.sql"),
    include_str!("../../sql/functions/preview.sql"),
    include_str!("../../sql/functions/execute_batch.sql"),
    include_str!("../../sql/functions/reporting_aliases.sql"),
    include_str!("../../sql/functions/aliasing.sql"),
    include_str!("../../sql/functions/rollback.sql"),
    include_str!("../../sql/functions/rollback_preview.sql"),
    include_str!("../../sql/functions/incidents.sql"),
    include_str!("../../sql/functions/rollout.sql"),
];

/// The SQL of the functions installed over the tables, before adaptation.
pub fn table_functions() -> &'static [&'static str] {
    TABLE_FUNCTIONS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaMode {
    Owned,
    Attached,
}

impl SchemaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owned => "owned",
            Self::Attached => "attached",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaInfo {
    pub version: i32,
    pub mode: SchemaMode,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the database has only part of HERA's six tables (missing: {}); refusing to create or alter any",
        .0.join(", ")
    )]
    PartialSchema(Vec<String>),
    #[error(transparent)]
    Contract(#[from] ContractViolation),
    #[error(
        "the database already has functions named like hera-migrate's that hera-migrate did not \
         install: {}; refusing to replace or overload them (rename or drop them first)",
        .0.join(", ")
    )]
    ForeignFunctions(Vec<String>),
    #[error("installing the schema failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// Installs the schema (owned) or attaches to an existing HERA schema.
pub async fn install(pool: &PgPool) -> Result<SchemaInfo, SchemaError> {
    let mut conn = pool.acquire().await?;
    install_on(&mut conn).await
}

/// `install`, on one connection.
pub async fn install_on(conn: &mut PgConnection) -> Result<SchemaInfo, SchemaError> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(INSTALL_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    // An idempotent install says "already exists, skipping" for every object
    // it finds in place: nothing an operator needs to read.
    sqlx::query("SET LOCAL client_min_messages = warning")
        .execute(&mut *tx)
        .await?;
    let mode = decide_mode(&mut tx).await?;
    refuse_foreign_functions(&mut tx).await?;
    sqlx::raw_sql(SMART_CODE_FUNCTIONS)
        .execute(&mut *tx)
        .await?;
    match mode {
        SchemaMode::Owned => {
            sqlx::raw_sql(TABLES).execute(&mut *tx).await?;
            sqlx::raw_sql(INDEXES).execute(&mut *tx).await?;
            sqlx::raw_sql(ROW_SECURITY).execute(&mut *tx).await?;
        }
        SchemaMode::Attached => {
            contract::verify(&mut tx).await?;
            for advice in super::advice::missing_indexes(&mut tx).await? {
                tracing::warn!(
                    table = advice.table,
                    why = advice.why,
                    "attach mode creates no index; this one would help: {}",
                    advice.create
                );
            }
        }
    }
    sqlx::raw_sql(RETIRED).execute(&mut *tx).await?;
    let adaptation = Adaptation::read(&mut tx).await?;
    tracing::info!(
        copied_beyond_contract = ?adaptation.header_columns,
        line_columns_beyond_contract = ?adaptation.line_columns,
        fx_gate = adaptation.fx_columns,
        "reversals and reposts copy these columns as they are"
    );
    for functions in TABLE_FUNCTIONS {
        // Our own SQL, with column names from the catalog quoted as identifiers.
        sqlx::raw_sql(sqlx::AssertSqlSafe(adaptation.render(functions)))
            .execute(&mut *tx)
            .await?;
    }
    let info = SchemaInfo {
        version: SCHEMA_VERSION,
        mode,
    };
    record(&mut tx, &info).await?;
    tx.commit().await?;
    tracing::info!(
        version = info.version,
        mode = info.mode.as_str(),
        "schema ready"
    );
    Ok(info)
}

/// Refuses to install over functions by our names that no earlier install
/// of ours created (see `collisions`).
async fn refuse_foreign_functions(conn: &mut PgConnection) -> Result<(), SchemaError> {
    if recorded(conn).await?.is_some() {
        return Ok(());
    }
    let ours = collisions::created_functions(
        std::iter::once(SMART_CODE_FUNCTIONS).chain(TABLE_FUNCTIONS.iter().copied()),
    );
    let found = collisions::named_like(conn, &ours).await?;
    if found.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::ForeignFunctions(found))
    }
}

async fn decide_mode(conn: &mut PgConnection) -> Result<SchemaMode, SchemaError> {
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
          WHERE c.relnamespace = current_schema()::regnamespace
            AND c.relkind IN ('r', 'p') AND c.relname = ANY($1)",
    )
    .bind(SACRED_SIX)
    .fetch_all(&mut *conn)
    .await?;
    if present.is_empty() {
        return Ok(SchemaMode::Owned);
    }
    if present.len() < SACRED_SIX.len() {
        let missing = SACRED_SIX
            .iter()
            .filter(|table| !present.iter().any(|p| p == *table))
            .map(|table| (*table).to_owned())
            .collect();
        return Err(SchemaError::PartialSchema(missing));
    }
    Ok(match recorded(conn).await? {
        Some(info) if info.mode == SchemaMode::Owned => SchemaMode::Owned,
        _ => SchemaMode::Attached,
    })
}

/// What an earlier install recorded, if any.
pub async fn recorded(conn: &mut PgConnection) -> Result<Option<SchemaInfo>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar(
        "SELECT to_regprocedure(current_schema() || '.hera_migrate_schema_info()') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        return Ok(None);
    }
    let info: sqlx::types::Json<SchemaInfo> =
        sqlx::query_scalar("SELECT hera_migrate_schema_info()")
            .fetch_one(&mut *conn)
            .await?;
    Ok(Some(info.0))
}

async fn record(conn: &mut PgConnection, info: &SchemaInfo) -> Result<(), sqlx::Error> {
    // The version lives in a function, not a table: zero tables, and readable
    // from psql as `SELECT hera_migrate_schema_info()`.
    let body = serde_json::to_string(info).expect("schema info serializes");
    let sql = format!(
        "CREATE OR REPLACE FUNCTION hera_migrate_schema_info() RETURNS jsonb \
         LANGUAGE sql IMMUTABLE AS $info$ SELECT {}::jsonb $info$",
        quote_literal(&body)
    );
    // The body is our own serialized struct, quoted as a literal.
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(conn)
        .await?;
    Ok(())
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
