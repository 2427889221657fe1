//! Indexes hera-migrate relies on. In a schema it owns it creates them
//! (`sql/schema/indexes.sql`); in a HERA database it attaches to it creates
//! nothing, and says instead which would help and how to add them.
use sqlx::PgConnection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexAdvice {
    pub table: &'static str,
    /// An index whose key starts with these columns serves.
    pub leading: &'static [&'static str],
    pub create: &'static str,
    pub why: &'static str,
}

pub const ADVISED: &[IndexAdvice] = &[
    IndexAdvice {
        table: "universal_transactions",
        leading: &["organization_id", "transaction_date"],
        create: "CREATE INDEX CONCURRENTLY ut_org_date_idx ON universal_transactions (organization_id, transaction_date, id)",
        why: "the preview and every batch read one organization's date range in keyset order",
    },
    IndexAdvice {
        table: "universal_transaction_lines",
        leading: &["transaction_id"],
        create: "CREATE INDEX CONCURRENTLY utl_transaction_idx ON universal_transaction_lines (transaction_id)",
        why: "balances and copies read the lines of each candidate",
    },
    IndexAdvice {
        table: "core_entities",
        leading: &["organization_id", "entity_type"],
        create: "CREATE INDEX CONCURRENTLY ce_org_type_idx ON core_entities (organization_id, entity_type)",
        why: "fiscal periods and organization entities are looked up by type",
    },
    IndexAdvice {
        table: "core_relationships",
        leading: &["organization_id", "from_entity_id"],
        create: "CREATE INDEX CONCURRENTLY cr_org_from_idx ON core_relationships (organization_id, from_entity_id, relationship_type)",
        why: "every call checks the caller's membership",
    },
];

/// The key columns of every index on `table` (in the current schema).
async fn index_keys(conn: &mut PgConnection, table: &str) -> Result<Vec<Vec<String>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT array_agg(a.attname::text ORDER BY k.ord)
           FROM pg_index i
          CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, ord)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
          WHERE i.indrelid = to_regclass(current_schema() || '.' || $1)
          GROUP BY i.indexrelid",
    )
    .bind(table)
    .fetch_all(conn)
    .await
}

/// The advised indexes that no existing index serves.
pub async fn missing_indexes(conn: &mut PgConnection) -> Result<Vec<IndexAdvice>, sqlx::Error> {
    let mut missing = Vec::new();
    for advice in ADVISED {
        let keys = index_keys(conn, advice.table).await?;
        let served = keys.iter().any(|key| {
            key.len() >= advice.leading.len() && key.iter().zip(advice.leading).all(|(a, b)| a == b)
        });
        if !served {
            missing.push(*advice);
        }
    }
    Ok(missing)
}
