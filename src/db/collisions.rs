//! Our functions live beside HERA's in its schema. A HERA database that
//! already has a function by one of our names (an earlier sketch of the
//! guide's functions, say) must not have it replaced, nor overloaded: an
//! overload with other parameters makes its callers' calls ambiguous. So the
//! first install in a schema refuses to go on, naming them; once an install
//! is recorded (`hera_migrate_schema_info()`), the names are ours.
use std::collections::BTreeSet;

use sqlx::PgConnection;

/// The names of the functions `sql` creates.
pub fn created_functions<'a>(sqls: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    const CREATE: &str = "CREATE OR REPLACE FUNCTION ";
    sqls.into_iter()
        .flat_map(|sql| {
            sql.match_indices(CREATE)
                .map(move |(at, _)| &sql[at + CREATE.len()..])
        })
        .filter_map(|rest| rest.split('(').next())
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Functions of the current schema named like ours, as `name(arguments)`.
pub async fn named_like(
    conn: &mut PgConnection,
    names: &BTreeSet<String>,
) -> Result<Vec<String>, sqlx::Error> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    sqlx::query_scalar(
        "SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
           FROM pg_proc p
          WHERE p.pronamespace = current_schema()::regnamespace AND p.proname = ANY ($1)
          ORDER BY 1",
    )
    .bind(&names)
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_function_a_file_creates() {
        let names = created_functions([
            "CREATE OR REPLACE FUNCTION a_v2(p uuid)\nRETURNS int ... CREATE OR REPLACE FUNCTION b()",
            "-- nothing here",
        ]);
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["a_v2", "b"]);
    }
}
