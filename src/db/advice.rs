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

impl IndexAdvice {
    /// The name the advised DDL gives the index.
    pub fn index_name(&self) -> &'static str {
        self.create
            .split_whitespace()
            .nth(3)
            .expect("CREATE INDEX CONCURRENTLY <name> ON ...")
    }
}

/// The name and key columns of every valid index on `table` (in the current
/// schema); an index left invalid by a failed CREATE INDEX CONCURRENTLY
/// serves no query.
async fn index_keys(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Vec<(String, Vec<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.indexrelid::regclass::text, array_agg(a.attname::text ORDER BY k.ord)
           FROM pg_index i
          CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, ord)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
          WHERE i.indrelid = to_regclass(current_schema() || '.' || $1)
            AND i.indisvalid
          GROUP BY i.indexrelid
          ORDER BY 1",
    )
    .bind(table)
    .fetch_all(conn)
    .await
}

/// The existing index that serves `advice`, if one does.
pub async fn serving(
    conn: &mut PgConnection,
    advice: &IndexAdvice,
) -> Result<Option<String>, sqlx::Error> {
    let keys = index_keys(conn, advice.table).await?;
    Ok(keys
        .into_iter()
        .find(|(_, key)| {
            key.len() >= advice.leading.len() && key.iter().zip(advice.leading).all(|(a, b)| a == b)
        })
        .map(|(name, _)| name))
}

/// The advised indexes that no existing index serves.
pub async fn missing_indexes(conn: &mut PgConnection) -> Result<Vec<IndexAdvice>, sqlx::Error> {
    let mut missing = Vec::new();
    for advice in ADVISED {
        if serving(conn, advice).await?.is_none() {
            missing.push(*advice);
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_advice_names_its_index() {
        let names: Vec<&str> = super::ADVISED.iter().map(|a| a.index_name()).collect();
        assert_eq!(
            names,
            [
                "ut_org_date_idx",
                "utl_transaction_idx",
                "ce_org_type_idx",
                "cr_org_from_idx"
            ]
        );
    }
}
