//! The ledger as HERA reads it, written here independently of the service's
//! own SQL: the trial balance through HERA's view
//! `v_universal_transaction_lines_drcr`, and digests of the business rows a
//! migration and its rollback must leave exactly as they were.
use std::collections::BTreeMap;

use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

/// Per (line entity_id, line_data.account_code, line_data.account, currency,
/// fiscal period): debits minus credits, zeros left out.
pub type HeraTrialBalance = Vec<(String, String, String, String, String, Decimal)>;

/// The trial balance computed HERA's way: `v_universal_transaction_lines_drcr`
/// (GL lines by `hera_line_side`) over the transactions that are not voided;
/// a line's period is its transaction's fiscal period entity, else the active
/// `period` entity whose dates contain the transaction date.
pub async fn hera_trial_balance(pool: &PgPool, org: Uuid) -> HeraTrialBalance {
    sqlx::query_as(
        "SELECT coalesce(v.entity_id::text, ''), coalesce(v.line_data ->> 'account_code', ''),
                coalesce(v.line_data ->> 'account', ''), coalesce(t.transaction_currency_code, ''),
                coalesce(p.metadata ->> 'period_number', ''),
                sum(v.debit_amount - v.credit_amount)
           FROM v_universal_transaction_lines_drcr v
           JOIN universal_transactions t ON t.id = v.transaction_id
           LEFT JOIN LATERAL (
               SELECT e.metadata FROM core_entities e
                WHERE e.organization_id = t.organization_id AND e.entity_type = 'period' AND e.status = 'active'
                  AND (e.id = t.fiscal_period_entity_id
                       OR (t.fiscal_period_entity_id IS NULL
                           AND (t.transaction_date AT TIME ZONE 'UTC')::date
                               BETWEEN (e.metadata ->> 'start_date')::date AND (e.metadata ->> 'end_date')::date))
                ORDER BY e.id = t.fiscal_period_entity_id DESC
                LIMIT 1) p ON true
          WHERE t.organization_id = $1 AND t.transaction_status <> 'voided' AND v.side IS NOT NULL
          GROUP BY 1, 2, 3, 4, 5
         HAVING sum(v.debit_amount - v.credit_amount) <> 0
          ORDER BY 1, 2, 3, 4, 5",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The business transactions (not a migration's copies or bookkeeping).
const ORIGINALS: &str = "t.organization_id = $1
    AND NOT coalesce(t.metadata ? 'reversal_of', false)
    AND NOT coalesce(t.metadata ? 'original_transaction_id', false)
    AND t.transaction_type NOT IN ('MIGRATION_RUN', 'MIGRATION_OPERATION', 'MIGRATION_VALIDATION',
                                   'SECURITY_VALIDATION', 'MIGRATION_AUDIT_CHAIN')";

/// Per business transaction, a digest of every column (and of its lines),
/// except what a rollback documents as changed: updated_at, updated_by,
/// version and metadata.rollback_history.
pub async fn originals(pool: &PgPool, org: Uuid) -> BTreeMap<Uuid, String> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT t.id,
                md5(jsonb_set(to_jsonb(t) - 'updated_at' - 'updated_by' - 'version', '{{metadata}}',
                              coalesce(t.metadata, '{{}}') - 'rollback_history')::text
                    || coalesce((SELECT string_agg(to_jsonb(l)::text, '|' ORDER BY l.line_number)
                                   FROM universal_transaction_lines l WHERE l.transaction_id = t.id), ''))
           FROM universal_transactions t
          WHERE {ORIGINALS}"
    )))
    .bind(org)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// Every business transaction's smart code, byte for byte.
pub async fn smart_codes(pool: &PgPool, org: Uuid) -> BTreeMap<Uuid, String> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT t.id, t.smart_code::text FROM universal_transactions t WHERE {ORIGINALS}"
    )))
    .bind(org)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// A digest of every row of an organization in the two transaction tables.
pub async fn everything(pool: &PgPool, org: Uuid) -> String {
    sqlx::query_scalar(
        "SELECT md5(coalesce((SELECT string_agg(to_jsonb(t)::text, '|' ORDER BY t.id)
                                FROM universal_transactions t WHERE t.organization_id = $1), '')
                    || coalesce((SELECT string_agg(to_jsonb(l)::text, '|' ORDER BY l.id)
                                   FROM universal_transaction_lines l WHERE l.organization_id = $1), ''))",
    )
    .bind(org)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The ids of one fixture case's transactions (`metadata.fixture_case`).
pub async fn case(pool: &PgPool, org: Uuid, case: &str) -> Vec<Uuid> {
    sqlx::query_scalar(
        "SELECT id FROM universal_transactions
          WHERE organization_id = $1 AND metadata ->> 'fixture_case' = $2
            AND NOT metadata ? 'reversal_of' AND NOT metadata ? 'original_transaction_id'
          ORDER BY id",
    )
    .bind(org)
    .bind(case)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// How many transactions in effect (not voided: a rolled-back migration's
/// reversals carry their original's code) HERA's own read RPC finds by this
/// exact smart code.
pub async fn read_by_code(pool: &PgPool, org: Uuid, smart_code: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM jsonb_array_elements(
                    hera_transactions_read_v1($1, p_smart_code => $2, p_limit => 500, p_include_lines => false)) r
          WHERE r ->> 'transaction_status' <> 'voided'",
    )
    .bind(org)
    .bind(smart_code)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The functions and views of the database that are not hera-migrate's:
/// name, arguments and a digest of the body, or the view's definition.
pub async fn foreign_objects(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
                || md5(pg_get_functiondef(p.oid))
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p')
            AND p.proname !~ '^(hera_migration_|hera_smart_code_|hera_migrate_|hera_validate_fiscal_period_v2_enhanced$)'
         UNION ALL
         SELECT 'view ' || c.relname || ' ' || md5(pg_get_viewdef(c.oid))
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm')
          ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Unbalances the organization's latest transaction (one GL line one unit
/// off), which a run then quarantines: its id.
pub async fn unbalance_latest(pool: &PgPool, org: Uuid) -> Uuid {
    sqlx::query_scalar(
        "UPDATE universal_transaction_lines SET line_amount = line_amount + 1
          WHERE id = (SELECT l.id FROM universal_transaction_lines l
                        JOIN universal_transactions t ON t.id = l.transaction_id
                       WHERE t.organization_id = $1 ORDER BY t.transaction_date DESC LIMIT 1)
         RETURNING transaction_id",
    )
    .bind(org)
    .fetch_one(pool)
    .await
    .unwrap()
}
