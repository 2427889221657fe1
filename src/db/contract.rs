//! HERA's column contract: every column hera-migrate reads or writes, with the
//! type family it needs. In attach mode an existing database is checked against
//! it, and a start is refused naming each column that is missing or of an
//! incompatible type. Extra columns, tables, triggers and constraints are fine.
use std::fmt;

use sqlx::PgConnection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Uuid,
    Text,
    Numeric,
    Integer,
    Boolean,
    Jsonb,
    Timestamp,
}

impl Family {
    /// Whether a column of `data_type` (as `information_schema` spells it) serves.
    fn accepts(self, data_type: &str) -> bool {
        match self {
            Self::Uuid => data_type == "uuid",
            Self::Text => matches!(data_type, "text" | "character varying" | "character"),
            Self::Numeric => data_type == "numeric",
            Self::Integer => matches!(data_type, "integer" | "bigint" | "smallint"),
            Self::Boolean => data_type == "boolean",
            Self::Jsonb => data_type == "jsonb",
            Self::Timestamp => matches!(
                data_type,
                "timestamp with time zone" | "timestamp without time zone" | "date"
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Uuid => "uuid",
            Self::Text => "text",
            Self::Numeric => "numeric",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Jsonb => "jsonb",
            Self::Timestamp => "timestamptz",
        }
    }
}

use Family::*;

type Columns = &'static [(&'static str, Family)];

const AUDIT: Columns = &[
    ("created_at", Timestamp),
    ("updated_at", Timestamp),
    ("created_by", Uuid),
    ("updated_by", Uuid),
];

/// Per table, the columns we use (besides the audit columns every table has).
pub const CONTRACT: &[(&str, Columns)] = &[
    (
        "core_organizations",
        &[
            ("id", Uuid),
            ("organization_name", Text),
            ("organization_code", Text),
            ("organization_type", Text),
            ("settings", Jsonb),
            ("status", Text),
        ],
    ),
    (
        "core_entities",
        &[
            ("id", Uuid),
            ("organization_id", Uuid),
            ("entity_type", Text),
            ("entity_name", Text),
            ("entity_code", Text),
            ("smart_code", Text),
            ("metadata", Jsonb),
            ("status", Text),
            ("version", Integer),
        ],
    ),
    (
        "core_dynamic_data",
        &[
            ("id", Uuid),
            ("organization_id", Uuid),
            ("entity_id", Uuid),
            ("field_name", Text),
            ("field_type", Text),
            ("field_value_text", Text),
            ("field_value_number", Numeric),
            ("field_value_boolean", Boolean),
            ("field_value_date", Timestamp),
            ("field_value_json", Jsonb),
            ("smart_code", Text),
        ],
    ),
    (
        "core_relationships",
        &[
            ("id", Uuid),
            ("organization_id", Uuid),
            ("from_entity_id", Uuid),
            ("to_entity_id", Uuid),
            ("relationship_type", Text),
            ("relationship_data", Jsonb),
            ("smart_code", Text),
            ("is_active", Boolean),
            ("effective_date", Timestamp),
            ("expiration_date", Timestamp),
        ],
    ),
    (
        "universal_transactions",
        &[
            ("id", Uuid),
            ("organization_id", Uuid),
            ("transaction_type", Text),
            ("transaction_code", Text),
            ("transaction_date", Timestamp),
            ("source_entity_id", Uuid),
            ("target_entity_id", Uuid),
            ("total_amount", Numeric),
            ("transaction_status", Text),
            ("smart_code", Text),
            ("business_context", Jsonb),
            ("metadata", Jsonb),
            ("fiscal_period_entity_id", Uuid),
            ("fiscal_year", Integer),
            ("fiscal_period", Integer),
            ("posting_period_code", Text),
            ("transaction_currency_code", Text),
            ("version", Integer),
        ],
    ),
    (
        "universal_transaction_lines",
        &[
            ("id", Uuid),
            ("organization_id", Uuid),
            ("transaction_id", Uuid),
            ("line_number", Integer),
            ("entity_id", Uuid),
            ("line_type", Text),
            ("description", Text),
            ("quantity", Numeric),
            ("unit_amount", Numeric),
            ("line_amount", Numeric),
            ("discount_amount", Numeric),
            ("tax_amount", Numeric),
            ("smart_code", Text),
            ("line_data", Jsonb),
            ("version", Integer),
        ],
    ),
];

/// Whether `column` of `table` is one the contract names (so hera-migrate
/// writes it itself rather than copying it as it is).
pub fn uses(table: &str, column: &str) -> bool {
    AUDIT.iter().any(|(c, _)| *c == column)
        || CONTRACT
            .iter()
            .filter(|(t, _)| *t == table)
            .any(|(_, columns)| columns.iter().any(|(c, _)| *c == column))
}

/// One column the database lacks, or has with a type we cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnProblem {
    pub table: &'static str,
    pub column: &'static str,
    pub needed: Family,
    /// The type found, or `None` when the column is missing.
    pub found: Option<String>,
}

impl fmt::Display for ColumnProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.found {
            None => write!(f, "{}.{} is missing", self.table, self.column),
            Some(found) => write!(
                f,
                "{}.{} is {found}, needs {}",
                self.table,
                self.column,
                self.needed.name()
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContractViolation {
    #[error(
        "the existing HERA schema lacks what hera-migrate needs: {}",
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Columns(Vec<ColumnProblem>),
    #[error("reading the catalog failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// Checks the tables of the current schema against the contract.
pub async fn verify(conn: &mut PgConnection) -> Result<(), ContractViolation> {
    let tables: Vec<&str> = CONTRACT.iter().map(|(table, _)| *table).collect();
    let found: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text
           FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = ANY($1)",
    )
    .bind(&tables)
    .fetch_all(conn)
    .await?;
    let problems = problems(&found);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ContractViolation::Columns(problems))
    }
}

fn problems(found: &[(String, String, String)]) -> Vec<ColumnProblem> {
    let type_of = |table: &str, column: &str| {
        found
            .iter()
            .find(|(t, c, _)| t == table && c == column)
            .map(|(_, _, data_type)| data_type.as_str())
    };
    CONTRACT
        .iter()
        .flat_map(|(table, columns)| {
            columns
                .iter()
                .chain(AUDIT)
                .map(move |(column, needed)| (*table, *column, *needed))
        })
        .filter_map(|(table, column, needed)| match type_of(table, column) {
            Some(data_type) if needed.accepts(data_type) => None,
            found => Some(ColumnProblem {
                table,
                column,
                needed,
                found: found.map(str::to_owned),
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_missing_and_incompatible_columns() {
        let mut found: Vec<(String, String, String)> = Vec::new();
        for (table, columns) in CONTRACT {
            for (column, family) in columns.iter().chain(AUDIT) {
                found.push((table.to_string(), column.to_string(), family.name().into()));
            }
        }
        // timestamptz is spelled differently in information_schema.
        for row in &mut found {
            if row.2 == "timestamptz" {
                row.2 = "timestamp with time zone".into();
            }
        }
        assert!(problems(&found).is_empty());
        found.retain(|(t, c, _)| !(t == "universal_transactions" && c == "smart_code"));
        found
            .iter_mut()
            .find(|(t, c, _)| t == "universal_transaction_lines" && c == "line_amount")
            .unwrap()
            .2 = "text".into();
        let text: Vec<String> = problems(&found).iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "universal_transactions.smart_code is missing",
                "universal_transaction_lines.line_amount is text, needs numeric"
            ]
        );
    }
}
