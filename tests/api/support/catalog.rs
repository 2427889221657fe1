//! A snapshot of the catalog as far as "did the install change any table"
//! goes: tables, columns, constraints, indexes, triggers, policies and RLS
//! flags in every non-system schema.
use sqlx::PgPool;

const SNAPSHOT: &str = r#"
WITH rels AS (
    SELECT c.oid, n.nspname || '.' || c.relname AS name, c.relrowsecurity, c.relforcerowsecurity
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
)
SELECT 'table ' || name || ' rls=' || relrowsecurity || ' force=' || relforcerowsecurity FROM rels
UNION ALL
SELECT 'column ' || r.name || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
UNION ALL
SELECT 'constraint ' || r.name || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
  FROM rels r JOIN pg_constraint co ON co.conrelid = r.oid
UNION ALL
SELECT 'index ' || r.name || ' ' || pg_get_indexdef(i.indexrelid)
  FROM rels r JOIN pg_index i ON i.indrelid = r.oid
UNION ALL
SELECT 'trigger ' || r.name || ' ' || pg_get_triggerdef(t.oid)
  FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal
UNION ALL
SELECT 'policy ' || r.name || ' ' || p.polname || ' ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
  FROM rels r JOIN pg_policy p ON p.polrelid = r.oid
ORDER BY 1
"#;

pub async fn snapshot(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(SNAPSHOT)
        .fetch_all(pool)
        .await
        .expect("read the catalog")
}

/// Every table in a non-system schema, views and foreign tables included, as
/// `schema.table`.
pub async fn tables(pool: &PgPool) -> Vec<String> {
    relations(pool, &["r", "p", "f", "v", "m"]).await
}

/// Only the ordinary (and partitioned) tables, as `schema.table`.
pub async fn base_tables(pool: &PgPool) -> Vec<String> {
    relations(pool, &["r", "p"]).await
}

async fn relations(pool: &PgPool, kinds: &[&str]) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind::text = ANY ($1)
            AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
          ORDER BY 1",
    )
    .bind(kinds)
    .fetch_all(pool)
    .await
    .expect("list relations")
}
