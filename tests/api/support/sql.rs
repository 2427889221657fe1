//! Helpers for the SQL-level tests of runs, rollback, aliases and validation:
//! a fresh database with the functions installed (no server needed) and
//! seed-demo data, and the calls an operator would make from psql.
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::TestDatabase;

pub struct Scene {
    /// Kept alive for the pool's sake.
    pub _db: TestDatabase,
    pub pool: PgPool,
    pub org: Uuid,
    pub actor: Uuid,
}

/// A fresh database, the schema installed, `transactions` seeded 2024
/// transactions in each of two organizations; the first one is the scene's.
pub async fn scene(transactions: u64) -> Scene {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    hera_migrate::db::schema::install(&pool)
        .await
        .expect("install the schema");
    let report = super::fixtures::seed_2024(&pool, 2, transactions, 11).await;
    let org = &report.organizations[0];
    Scene {
        org: org.id,
        actor: org.users[0].id,
        _db: db,
        pool,
    }
}

pub fn year_2024(batch_size: i32) -> Value {
    json!({"from_date": "2024-01-01", "to_date": "2024-12-31", "batch_size": batch_size})
}

pub async fn create_run(pool: &PgPool, org: Uuid, actor: Uuid, parameters: Value) -> Uuid {
    sqlx::query_scalar("SELECT hera_migration_create_run_v2($1, $2, $3)")
        .bind(org)
        .bind(actor)
        .bind(parameters)
        .fetch_one(pool)
        .await
        .unwrap()
}

pub async fn call(pool: &PgPool, function: &str, run: Uuid) -> Value {
    call_sql(pool, &format!("SELECT {function}($1)"), run).await
}

/// Runs `statement` with `$1` the run: one batch's answer.
pub async fn call_sql(pool: &PgPool, statement: &str, run: Uuid) -> Value {
    sqlx::query_scalar(sqlx::AssertSqlSafe(statement.to_owned()))
        .bind(run)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Calls a batch function until it answers done; returns every answer.
pub async fn to_end(pool: &PgPool, function: &str, run: Uuid) -> Vec<Value> {
    to_end_sql(pool, &format!("SELECT {function}($1)"), run).await
}

/// `to_end` for a batch `statement` with `$1` the run (and its other
/// arguments written in, say the batch size).
pub async fn to_end_sql(pool: &PgPool, statement: &str, run: Uuid) -> Vec<Value> {
    let mut results = Vec::new();
    for _ in 0..10_000 {
        let result = call_sql(pool, statement, run).await;
        assert!(result.get("halted").is_none(), "halted: {result}");
        let done = result["done"] == true;
        results.push(result);
        if done {
            return results;
        }
    }
    panic!("{statement} never finished");
}

pub fn sum(results: &[Value], field: &str) -> i64 {
    results.iter().map(|r| r[field].as_i64().unwrap()).sum()
}

/// Migrates to the end and marks the run SUCCEEDED, as the engine does.
pub async fn migrate(pool: &PgPool, org: Uuid, actor: Uuid, batch_size: i32) -> (Uuid, i64) {
    let run = create_run(pool, org, actor, year_2024(batch_size)).await;
    let results = to_end(pool, "hera_migration_execute_batch_v2", run).await;
    set_state(pool, run, "SUCCEEDED", None).await;
    (run, sum(&results, "migrated"))
}

/// Sets a run's state (and phase), as the engine's controls do.
pub async fn set_state(pool: &PgPool, run: Uuid, state: &str, phase: Option<&str>) {
    sqlx::query(
        "UPDATE universal_transactions
            SET metadata = metadata || jsonb_build_object('state', $2::text)
                           || CASE WHEN $3::text IS NULL THEN '{}'::jsonb
                                   ELSE jsonb_build_object('phase', $3::text) END,
                transaction_status = lower($2::text)
          WHERE id = $1",
    )
    .bind(run)
    .bind(state)
    .bind(phase)
    .execute(pool)
    .await
    .unwrap();
}

/// Per (account key, currency, fiscal period): the net amount.
pub type TrialBalance = Vec<(String, String, String, rust_decimal::Decimal)>;

pub async fn trial_balance(pool: &PgPool, org: Uuid) -> TrialBalance {
    sqlx::query_as(
        "SELECT account_key, currency_code, fiscal_period, net_amount
           FROM hera_migration_trial_balance_v2($1)",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The organization's migration candidates (the installed rule), sorted.
pub async fn candidates(pool: &PgPool, org: Uuid) -> Vec<Uuid> {
    sqlx::query_scalar(
        "SELECT id FROM universal_transactions t
          WHERE organization_id = $1
            AND hera_migration_is_candidate_v2(transaction_status, smart_code, metadata, ARRAY['posted'])
          ORDER BY id",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The SQLSTATE of a failed query.
pub fn sqlstate(error: sqlx::Error) -> String {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_else(|| panic!("not a database error: {error}"))
}

/// The business holding row locks on every transaction of `org` until the
/// returned transaction ends (commit, rollback or drop).
pub async fn lock_every_transaction(
    pool: &PgPool,
    org: Uuid,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut business = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM universal_transactions WHERE organization_id = $1 FOR UPDATE")
        .bind(org)
        .execute(&mut *business)
        .await
        .unwrap();
    business
}
