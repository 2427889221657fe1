//! Our SQL, fitted to the tables it runs on. A reversal and a repost carry
//! every column of their original, and in an attached HERA database that
//! includes columns beyond our contract (a foreign-currency journal's base
//! currency and exchange-rate fields, references, approvals); HERA's FX
//! posting gate reads its FX columns, which an older schema may lack. The
//! installer reads the catalog and writes those column lists and tests into
//! the functions it installs: `sql/functions/` marks each place as
//! `/*@name*/default/*@*/`, which stays valid SQL (the default) when a file is
//! run as it is.
use sqlx::PgConnection;

use super::contract;

/// What the tables of this database add to our contract.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adaptation {
    /// Columns of `universal_transactions` beyond the contract, in table order.
    pub header_columns: Vec<String>,
    /// Columns of `universal_transaction_lines` beyond the contract.
    pub line_columns: Vec<String>,
    /// Whether the transaction table has HERA's FX columns.
    pub fx_columns: bool,
}

/// HERA's FX fields, which its posting gate reads.
const FX_COLUMNS: [&str; 4] = [
    "base_currency_code",
    "exchange_rate",
    "exchange_rate_date",
    "exchange_rate_type",
];

/// The FX gate's test, written in when the columns exist.
const FX_GATE: &str = include_str!("../../sql/functions/rules_fx_gate.sql");

/// Columns of a table in the current schema that a copy can be given: not
/// dropped, not generated, not an identity the database always assigns.
const COPYABLE_COLUMNS: &str = "SELECT a.attname::text
      FROM pg_attribute a
     WHERE a.attrelid = to_regclass(current_schema() || '.' || $1)
       AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attgenerated = '' AND a.attidentity <> 'a'
     ORDER BY a.attnum";

impl Adaptation {
    /// Reads what the two transaction tables hold beyond our contract.
    pub async fn read(conn: &mut PgConnection) -> Result<Self, sqlx::Error> {
        let headers = copyable(conn, "universal_transactions").await?;
        let lines = copyable(conn, "universal_transaction_lines").await?;
        Ok(Self {
            fx_columns: FX_COLUMNS.iter().all(|c| headers.iter().any(|h| h == c)),
            header_columns: beyond_contract("universal_transactions", headers),
            line_columns: beyond_contract("universal_transaction_lines", lines),
        })
    }

    /// `sql` with every placeholder written in.
    pub fn render(&self, sql: &str) -> String {
        let list = |columns: &[String], alias: &str| -> String {
            columns
                .iter()
                .map(|c| format!(", {alias}{}", quote_identifier(c)))
                .collect()
        };
        let fx = if self.fx_columns {
            FX_GATE.trim().to_owned()
        } else {
            "false".to_owned()
        };
        let mut out = sql.to_owned();
        for (name, value) in [
            ("header_copy_columns", list(&self.header_columns, "")),
            ("header_copy_values", list(&self.header_columns, "s.")),
            ("line_copy_columns", list(&self.line_columns, "")),
            ("line_copy_values", list(&self.line_columns, "l.")),
            ("fx_incomplete", fx),
        ] {
            out = replace_placeholder(&out, name, &value);
        }
        out
    }
}

async fn copyable(conn: &mut PgConnection, table: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(COPYABLE_COLUMNS)
        .bind(table)
        .fetch_all(conn)
        .await
}

fn beyond_contract(table: &str, columns: Vec<String>) -> Vec<String> {
    columns
        .into_iter()
        .filter(|column| !contract::uses(table, column))
        .collect()
}

/// Replaces each `/*@name*/default/*@*/` in `sql` by `value`.
fn replace_placeholder(sql: &str, name: &str, value: &str) -> String {
    const END: &str = "/*@*/";
    let start = format!("/*@{name}*/");
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(&start) {
        let after = &rest[at + start.len()..];
        let end = after
            .find(END)
            .unwrap_or_else(|| panic!("placeholder {start} has no {END}"));
        out.push_str(&rest[..at]);
        out.push_str(value);
        rest = &after[end + END.len()..];
    }
    out.push_str(rest);
    out
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_take_the_column_lists_or_keep_their_defaults() {
        let sql = "INSERT INTO t (a /*@header_copy_columns*//*@*/) SELECT s.a /*@header_copy_values*//*@*/; \
                   SELECT /*@fx_incomplete*/false/*@*/";
        let bare = Adaptation::default().render(sql);
        assert_eq!(bare, "INSERT INTO t (a ) SELECT s.a ; SELECT false");
        let hera = Adaptation {
            header_columns: vec!["base_currency_code".into(), "odd\"name".into()],
            line_columns: Vec::new(),
            fx_columns: true,
        }
        .render(sql);
        assert!(
            hera.starts_with(
                "INSERT INTO t (a , \"base_currency_code\", \"odd\"\"name\") \
                 SELECT s.a , s.\"base_currency_code\", s.\"odd\"\"name\";"
            ),
            "{hera}"
        );
        assert!(hera.contains("exchange_rate_type"), "{hera}");
    }

    #[test]
    fn every_placeholder_of_our_sql_is_known() {
        for sql in super::super::schema::table_functions() {
            let rendered = Adaptation::default().render(sql);
            assert!(!rendered.contains("/*@"), "an unknown placeholder in {sql}");
        }
    }
}
