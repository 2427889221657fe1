//! The HERA production fixture behaves like HERA: its triggers, constraints,
//! read RPC, role resolution and DR/CR view, over a tenant made by
//! `hera_fixture_tenant`. No server needed.
use std::collections::BTreeMap;

use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{
    hera::{self, Tenant},
    ledger,
};

const POS_V1: &str = "HERA.SALON.FINANCE.TXN.JOURNAL.POSSALE.v1";
const POS_UPPER_V1: &str = "HERA.SALON.FINANCE.TXN.JOURNAL.POSSALE.V1";
const FX_REFUSED: &str =
    "Cannot POST financial txn without exchange_rate, date, and type when currencies differ";

async fn scene(transactions: i32) -> (crate::support::TestDatabase, PgPool, Tenant) {
    let (db, pool) = hera::hera_production().await;
    let tenant = hera::tenant(&pool, "acme", transactions).await;
    (db, pool, tenant)
}

async fn smart_code(pool: &PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT smart_code::text FROM universal_transactions WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Runs `sql` (binding `actor`, then `id`) and returns the database's error.
async fn refused(
    pool: &PgPool,
    sql: &'static str,
    actor: Uuid,
    id: Uuid,
) -> (String, Option<String>) {
    let error = sqlx::query(sql)
        .bind(actor)
        .bind(id)
        .execute(pool)
        .await
        .expect_err("refused");
    let database = error.as_database_error().expect("a database error");
    (
        database.message().to_owned(),
        database.constraint().map(str::to_owned),
    )
}

/// Inserts a header the way HERA's RPCs write one (with an actor).
const INSERT_HEADER: &str = "INSERT INTO universal_transactions
        (organization_id, transaction_type, transaction_code, transaction_date, total_amount,
         transaction_status, smart_code, created_by, updated_by)
     VALUES ($1, $2, $3, '2024-05-10 12:00+00', $4, 'posted', $5, $6, $6)
     RETURNING id";

async fn insert_header(
    pool: &PgPool,
    tenant: &Tenant,
    transaction_type: &str,
    total: i64,
    smart_code: &str,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(INSERT_HEADER)
        .bind(tenant.id)
        .bind(transaction_type)
        .bind(format!("acme-TEST-{}", Uuid::new_v4().simple()))
        .bind(rust_decimal::Decimal::from(total))
        .bind(smart_code)
        .bind(tenant.users.owner)
        .fetch_one(pool)
        .await
}

#[tokio::test]
async fn a_tenant_loads_with_the_promised_counts() {
    let (_db, pool, tenant) = scene(200).await;
    let expected: BTreeMap<String, i64> = [
        ("pos_journal", 120),
        ("completed_sale", 40),
        ("fin_journal", 40),
        ("refund", 10),
        ("fx_complete", 3),
        ("fx_incomplete", 2),
        ("legacy_upper", 10),
        ("explicit_period", 2),
        ("unbalanced", 1),
        ("legacy_sign_violation", 1),
        ("draft", 3),
        ("pending", 2),
        ("voided", 2),
        ("already_v2", 2),
    ]
    .into_iter()
    .map(|(case, n)| (case.to_owned(), n))
    .collect();
    assert_eq!(tenant.counts, expected);

    let (headers, lines, prefixed): (i64, i64, bool) = sqlx::query_as(
        "SELECT count(*), (SELECT count(*) FROM universal_transaction_lines WHERE organization_id = $1),
                bool_and(transaction_code LIKE 'acme-%')
           FROM universal_transactions WHERE organization_id = $1",
    )
    .bind(tenant.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(headers, 238);
    // Three lines for POS journals (and legacy_upper) and sales, two otherwise.
    assert_eq!(lines, (120 + 10 + 40) * 3 + (238 - 170) * 2);
    assert!(prefixed);

    // The 'ORG' entity shares the organization's id; periods are 'period' entities.
    let (org_entity, active_periods, archived_periods): (String, i64, i64) = sqlx::query_as(
        "SELECT (SELECT entity_type FROM core_entities WHERE id = $1),
                count(*) FILTER (WHERE status = 'active'), count(*) FILTER (WHERE status = 'archived')
           FROM core_entities WHERE organization_id = $1 AND entity_type = 'period'",
    )
    .bind(tenant.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (org_entity.as_str(), active_periods, archived_periods),
        ("ORG", 12, 1)
    );
    assert_eq!(tenant.id_at("/org_entity_id"), tenant.id);

    // The legacy sign violation is there, and so is the NOT VALID constraint.
    let validated: bool = sqlx::query_scalar(
        "SELECT convalidated FROM pg_constraint
          WHERE conrelid = 'universal_transactions'::regclass AND conname = 'chk_txn_total_sign'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!validated, "chk_txn_total_sign stays NOT VALID");

    // Only HERA's two line triggers are disabled.
    let disabled: Vec<String> = sqlx::query_scalar(
        "SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(disabled, ["trg_tl_calc_amounts", "trg_tl_rollup_aiud"]);
}

#[tokio::test]
async fn two_tenants_never_collide_and_small_ones_keep_the_minimum_cases() {
    let (_db, pool) = hera::hera_production().await;
    let first = hera::tenant(&pool, "first", 20).await;
    let second = hera::tenant(&pool, "second", 20).await;
    assert_ne!(first.id, second.id);
    assert_eq!(first.counts, second.counts);
    for (case, n) in [
        ("pos_journal", 12),
        ("completed_sale", 4),
        ("fin_journal", 4),
        ("refund", 3),
        ("legacy_upper", 3),
    ] {
        assert_eq!(first.counts[case], n, "{case}");
    }
}

#[tokio::test]
async fn an_update_not_naming_smart_code_stores_upper_v1_and_one_naming_it_keeps_v1() {
    let (_db, pool, tenant) = scene(20).await;
    let journals = ledger::case(&pool, tenant.id, "fin_journal").await;
    let (quiet, named) = (journals[0], journals[1]);
    assert_eq!(smart_code(&pool, quiet).await, "HERA.FIN.GL.TXN.JOURNAL.v1");

    let not_naming = "UPDATE universal_transactions
                         SET updated_by = $1, updated_at = now(), version = version + 1
                       WHERE id = $2";
    let naming = "UPDATE universal_transactions
                     SET smart_code = smart_code, updated_by = $1, version = version + 1
                   WHERE id = $2";
    for (sql, id) in [(not_naming, quiet), (naming, named)] {
        sqlx::query(sql)
            .bind(tenant.users.owner)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(smart_code(&pool, quiet).await, "HERA.FIN.GL.TXN.JOURNAL.V1");
    assert_eq!(smart_code(&pool, named).await, "HERA.FIN.GL.TXN.JOURNAL.v1");

    // Stored .V1 codes (here the fixture's legacy_upper case) stay .V1 ...
    let legacy = ledger::case(&pool, tenant.id, "legacy_upper").await[0];
    assert_eq!(smart_code(&pool, legacy).await, POS_UPPER_V1);
    sqlx::query(not_naming)
        .bind(tenant.users.admin)
        .bind(legacy)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(smart_code(&pool, legacy).await, POS_UPPER_V1);
    // ... until an update names smart_code.
    sqlx::query(naming)
        .bind(tenant.users.admin)
        .bind(legacy)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(smart_code(&pool, legacy).await, POS_V1);
}

#[tokio::test]
async fn a_refund_code_with_a_positive_total_breaks_chk_txn_total_sign() {
    let (_db, pool, tenant) = scene(20).await;
    let refund = "HERA.SALON.POS.TXN.REFUND.v1";
    let error = insert_header(&pool, &tenant, "REFUND", 25, refund)
        .await
        .expect_err("a positive refund is refused");
    assert_eq!(
        error.as_database_error().and_then(|e| e.constraint()),
        Some("chk_txn_total_sign"),
        "{error}"
    );
    insert_header(&pool, &tenant, "REFUND", -25, refund)
        .await
        .expect("a negative refund is fine");

    // The legacy row predates the constraint (NOT VALID) but no update of it passes.
    let legacy = ledger::case(&pool, tenant.id, "legacy_sign_violation").await[0];
    let (_, constraint) = refused(
        &pool,
        "UPDATE universal_transactions SET updated_by = $1 WHERE id = $2",
        tenant.users.owner,
        legacy,
    )
    .await;
    assert_eq!(constraint.as_deref(), Some("chk_txn_total_sign"));
}

#[tokio::test]
async fn an_fx_incomplete_financial_transaction_cannot_go_from_reversed_back_to_posted() {
    let (_db, pool, tenant) = scene(20).await;
    let reverse = "UPDATE universal_transactions
                      SET transaction_status = 'reversed', updated_by = $1 WHERE id = $2";
    let post = "UPDATE universal_transactions
                   SET transaction_status = 'posted', updated_by = $1 WHERE id = $2";

    // Inserted straight as posted without a rate (HERA checks only updates);
    // leaving 'posted' is allowed, coming back is not.
    let incomplete = ledger::case(&pool, tenant.id, "fx_incomplete").await[0];
    sqlx::query(reverse)
        .bind(tenant.users.owner)
        .bind(incomplete)
        .execute(&pool)
        .await
        .expect("posted -> reversed");
    let (message, _) = refused(&pool, post, tenant.users.owner, incomplete).await;
    assert_eq!(message, FX_REFUSED);

    // With the rate, its date and its type it may.
    let complete = ledger::case(&pool, tenant.id, "fx_complete").await[0];
    for sql in [reverse, post] {
        sqlx::query(sql)
            .bind(tenant.users.owner)
            .bind(complete)
            .execute(&pool)
            .await
            .expect("a complete FX transaction moves freely");
    }
}

#[tokio::test]
async fn fx_fields_of_a_posted_financial_transaction_are_frozen() {
    let (_db, pool, tenant) = scene(20).await;
    let complete = ledger::case(&pool, tenant.id, "fx_complete").await[0];
    let (message, _) = refused(
        &pool,
        "UPDATE universal_transactions SET exchange_rate = 3.67, updated_by = $1 WHERE id = $2",
        tenant.users.owner,
        complete,
    )
    .await;
    assert_eq!(
        message,
        "FX fields are immutable after POST for financial transactions"
    );
}

#[tokio::test]
async fn a_write_without_an_actor_is_refused() {
    let (_db, pool, tenant) = scene(20).await;
    let error = sqlx::query(
        "INSERT INTO core_entities (organization_id, entity_type, entity_name, smart_code)
         VALUES ($1, 'customer', 'Nobody wrote me', 'HERA.SALON.CRM.CUSTOMER.ENTITY.v1')",
    )
    .bind(tenant.id)
    .execute(&pool)
    .await
    .expect_err("no created_by");
    assert_eq!(
        error.as_database_error().map(|e| e.message()),
        Some("created_by cannot be NULL (actor required)")
    );

    let journal = ledger::case(&pool, tenant.id, "fin_journal").await[0];
    let (message, _) = refused(
        &pool,
        "UPDATE universal_transactions SET updated_by = NULL, metadata = metadata || jsonb_build_object('tried_by', $1::uuid)
          WHERE id = $2",
        tenant.users.owner,
        journal,
    )
    .await;
    assert_eq!(message, "updated_by cannot be NULL (actor required)");
}

#[tokio::test]
async fn a_lower_case_transaction_type_is_stored_upper_case() {
    let (_db, pool, tenant) = scene(20).await;
    let id = insert_header(&pool, &tenant, "gl_journal", 0, POS_V1)
        .await
        .unwrap();
    let stored: (String, String) = sqlx::query_as(
        "SELECT transaction_type, smart_code::text FROM universal_transactions WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, ("GL_JOURNAL".to_owned(), POS_V1.to_owned()));

    // The fixture's sales were written as 'sale', too.
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT transaction_type FROM universal_transactions
          WHERE organization_id = $1 AND metadata ->> 'fixture_case' = 'completed_sale'",
    )
    .bind(tenant.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(types, ["SALE"]);
}

#[tokio::test]
async fn hera_transactions_read_v1_matches_the_smart_code_exactly() {
    let (_db, pool, tenant) = scene(40).await;
    let read = |code: &'static str| {
        sqlx::query_scalar::<_, serde_json::Value>(
            "SELECT hera_transactions_read_v1($1, p_smart_code => $2, p_limit => 500)",
        )
        .bind(tenant.id)
        .bind(code)
        .fetch_one(&pool)
    };
    let cases = |found: &serde_json::Value| -> BTreeMap<String, usize> {
        let mut cases = BTreeMap::new();
        for header in found.as_array().expect("an array") {
            assert_eq!(header["lines"].as_array().map(Vec::len), Some(3));
            let case = header["metadata"]["fixture_case"].as_str().unwrap();
            *cases.entry(case.to_owned()).or_default() += 1;
        }
        cases
    };

    let lower = read(POS_V1).await.unwrap();
    assert_eq!(
        cases(&lower),
        BTreeMap::from([("pos_journal".to_owned(), 24)])
    );
    let upper = read(POS_UPPER_V1).await.unwrap();
    assert_eq!(
        cases(&upper),
        BTreeMap::from([("legacy_upper".to_owned(), 3)])
    );
}

#[tokio::test]
async fn org_roles_resolve_from_the_primary_role_before_the_membership() {
    let (_db, pool, tenant) = scene(20).await;
    let users = tenant.users;
    for (user, role) in [
        (users.owner, "ORG_OWNER"),
        (users.admin, "ORG_ADMIN"),
        // Its MEMBER_OF still says ORG_OWNER: the primary HAS_ROLE wins.
        (users.demoted, "ORG_EMPLOYEE"),
        (users.staff, "Receptionist"),
        (users.outsider, "MEMBER"),
    ] {
        let resolved: String = sqlx::query_scalar("SELECT _hera_resolve_org_role($1, $2)")
            .bind(user)
            .bind(tenant.id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(resolved, role, "{user}");
    }
}

#[tokio::test]
async fn the_drcr_view_nets_to_zero_per_transaction_except_the_unbalanced_one() {
    let (_db, pool, tenant) = scene(60).await;
    let off: Vec<(String, rust_decimal::Decimal)> = sqlx::query_as(
        "SELECT t.metadata ->> 'fixture_case', sum(v.debit_amount - v.credit_amount)
           FROM v_universal_transaction_lines_drcr v
           JOIN universal_transactions t ON t.id = v.transaction_id
          WHERE t.organization_id = $1
          GROUP BY t.id
         HAVING sum(v.debit_amount - v.credit_amount) <> 0",
    )
    .bind(tenant.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        off,
        [("unbalanced".to_owned(), rust_decimal::Decimal::from(10))]
    );

    // Every transaction has GL lines, each with a side.
    let (without_gl, sideless_gl): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE NOT has_gl), sum(sideless)::bigint FROM (
             SELECT bool_or(v.smart_code LIKE '%.GL.%') AS has_gl,
                    count(*) FILTER (WHERE v.smart_code LIKE '%.GL.%' AND v.side IS NULL) AS sideless
               FROM v_universal_transaction_lines_drcr v
              WHERE v.organization_id = $1
              GROUP BY v.transaction_id) per_transaction",
    )
    .bind(tenant.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((without_gl, sideless_gl), (0, 0));
}

#[tokio::test]
async fn fiscal_periods_are_period_entities_with_their_status_in_metadata() {
    let (_db, pool, tenant) = scene(20).await;
    let open: Vec<(String, bool)> = sqlx::query_as(
        "SELECT to_char(make_date(2024, m, 1), 'YYYY-MM'),
                validate_journal_posting_to_period(
                    ($2::jsonb -> 'periods' ->> to_char(make_date(2024, m, 1), 'YYYY-MM'))::uuid,
                    'HERA.FIN.GL.TXN.JOURNAL.v1', $1)
           FROM generate_series(1, 12) AS m ORDER BY 1",
    )
    .bind(tenant.id)
    .bind(&tenant.raw)
    .fetch_all(&pool)
    .await
    .unwrap();
    let closed: Vec<&str> = open
        .iter()
        .filter(|(_, open)| !open)
        .map(|(month, _)| month.as_str())
        .collect();
    assert_eq!(closed, ["2024-01", "2024-02", "2024-03"]);

    // The dashboard lists the twelve active periods, not the archived June;
    // only odd months carry a period_code.
    let (listed, with_code, june): (i64, i64, String) = sqlx::query_as(
        "SELECT count(*),
                count(*) FILTER (WHERE e.metadata ? 'period_code'),
                max(d.period_status) FILTER (WHERE d.period_number = '6')
           FROM v_period_close_dashboard d JOIN core_entities e ON e.id = d.period_id
          WHERE d.organization_id = $1",
    )
    .bind(tenant.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((listed, with_code, june.as_str()), (12, 6, "OPEN"));

    // explicit_period transactions are dated July but name January's period.
    let named: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT fiscal_period_entity_id FROM universal_transactions
          WHERE organization_id = $1 AND metadata ->> 'fixture_case' = 'explicit_period'
            AND extract(month FROM transaction_date AT TIME ZONE 'UTC') = 7",
    )
    .bind(tenant.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(named, [tenant.id_at("/periods/2024-01")]);
}
