//! The validation report at the SQL level (`hera_migration_validate_v2`):
//! every check passes on a clean run, and fails when the test breaks the
//! thing it checks. The report is read-only: it runs in a READ ONLY transaction.
use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::sql::{self, Scene};

/// The report, computed inside BEGIN READ ONLY.
async fn validate(pool: &PgPool, run: Uuid) -> Value {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await
        .unwrap();
    let report = sqlx::query_scalar("SELECT hera_migration_validate_v2($1)")
        .bind(run)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    report
}

/// name -> result of each check.
fn results(report: &Value) -> BTreeMap<String, String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

async fn exec(pool: &PgPool, statement: &str, id: Uuid) {
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

/// A run (it records its snapshot as it is created), migrated to the end;
/// it skips the candidates of the seed's closed periods.
async fn snapshotted_run(scene: &Scene) -> Uuid {
    run_to_end(scene, sql::year_2024(100)).await
}

/// A run that leaves nothing out: closed periods' candidates are posted to
/// the open period, so every candidate is migrated.
async fn clean_run(scene: &Scene) -> Uuid {
    let mut parameters = sql::year_2024(100);
    parameters["closed_period_policy"] = "POST_TO_OPEN_PERIOD".into();
    run_to_end(scene, parameters).await
}

async fn run_to_end(scene: &Scene, parameters: Value) -> Uuid {
    let run = sql::create_run(&scene.pool, scene.org, scene.actor, parameters).await;
    sql::to_end(&scene.pool, "hera_migration_execute_batch_v2", run).await;
    sql::set_state(&scene.pool, run, "SUCCEEDED", None).await;
    run
}

/// The report of a sound run that skipped candidates: completeness WARNs
/// (listing the skips), every other check passes, and so the run is WARN.
fn only_the_skips_warn(report: &Value) {
    let mut expected = all("PASS", &EXECUTION_CHECKS);
    expected.insert("completeness".into(), "WARN".into());
    assert_eq!(results(report), expected, "{report:#}");
    assert_eq!(report["overall"], "WARN", "{report:#}");
    let completeness = check(report, "completeness");
    assert!(
        completeness["summary"]
            .as_str()
            .unwrap()
            .contains("skipped (closed or locked period: "),
        "{completeness:#}"
    );
}

fn all(result: &str, names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .map(|n| ((*n).to_owned(), result.to_owned()))
        .collect()
}

const EXECUTION_CHECKS: [&str; 5] = [
    "zero_tables",
    "gl_balance",
    "trial_balance",
    "completeness",
    "performance",
];

#[tokio::test]
async fn a_clean_run_passes_every_check_before_and_after_its_rollback() {
    let scene = sql::scene(250).await;
    let run = clean_run(&scene).await;

    let report = validate(&scene.pool, run).await;
    assert_eq!(
        results(&report),
        all("PASS", &EXECUTION_CHECKS),
        "{report:#}"
    );
    assert_eq!(report["overall"], "PASS");
    assert_eq!(report["sacred_six_status"], "COMPLIANT");
    assert_eq!(report["rollback_status"], Value::Null);
    let gl = &check(&report, "gl_balance")["details"];
    assert_eq!(gl["balance_percentage"], "100.00");
    assert!(
        gl["total_transactions"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    let completeness = &check(&report, "completeness")["details"];
    assert_eq!(completeness["unaccounted"], "0");
    assert_eq!(completeness["pending"], "0");
    assert_eq!(completeness["skipped_closed"], "0");
    assert_eq!(completeness["quarantined"], "0");
    assert_eq!(completeness["partial"], "false");
    // The snapshot's trial balance is exact text.
    let snapshot: Value = sqlx::query_scalar(
        "SELECT metadata -> 'snapshot' FROM universal_transactions WHERE id = $1",
    )
    .bind(run)
    .fetch_one(&scene.pool)
    .await
    .unwrap();
    assert!(snapshot["trial_balance"][0]["net_amount"].is_string());
    assert!(
        snapshot["tables"]
            .as_array()
            .unwrap()
            .contains(&Value::from("public.universal_transactions"))
    );

    let fiscal: Value =
        sqlx::query_scalar("SELECT hera_validate_fiscal_period_v2_enhanced('2024-03-15', $1)")
            .bind(scene.org)
            .fetch_one(&scene.pool)
            .await
            .unwrap();
    assert_eq!(fiscal["period_code"], "2024-03", "{fiscal}");
    assert!(["OPEN", "CLOSED", "LOCKED"].contains(&fiscal["status"].as_str().unwrap()));
    let outside: Value =
        sqlx::query_scalar("SELECT hera_validate_fiscal_period_v2_enhanced('1999-01-01', $1)")
            .bind(scene.org)
            .fetch_one(&scene.pool)
            .await
            .unwrap();
    assert_eq!(outside["status"], "UNASSIGNED");

    let summary: Value =
        sqlx::query_scalar("SELECT hera_migration_rollback_v2($1, $2, 'validation test')")
            .bind(scene.org)
            .bind(run.to_string())
            .fetch_one(&scene.pool)
            .await
            .unwrap();
    assert_eq!(summary["state"], "ROLLED_BACK");
    let report = validate(&scene.pool, run).await;
    let mut expected = all("PASS", &EXECUTION_CHECKS);
    expected.insert("rollback".into(), "PASS".into());
    assert_eq!(results(&report), expected, "{report:#}");
    assert_eq!(report["rollback_status"], "ROLLBACK_COMPLETE");

    // Un-void one repost: the rollback is incomplete again (and the ledger moved).
    exec(
        &scene.pool,
        "UPDATE universal_transactions SET transaction_status = 'posted'
          WHERE id = (SELECT id FROM universal_transactions
                       WHERE metadata ->> 'migration_id' = $1::text AND metadata ? 'original_transaction_id' LIMIT 1)",
        run,
    )
    .await;
    let report = validate(&scene.pool, run).await;
    assert_eq!(report["rollback_status"], "ROLLBACK_INCOMPLETE");
    let rollback = check(&report, "rollback");
    assert_eq!(rollback["result"], "FAIL");
    assert_eq!(rollback["details"]["reposts_in_effect"], "1");
    assert_eq!(check(&report, "trial_balance")["result"], "FAIL");
    assert_eq!(report["overall"], "FAIL");
}

#[tokio::test]
async fn each_check_fails_when_what_it_checks_is_broken() {
    let scene = sql::scene(200).await;
    let pool = &scene.pool;
    let run = snapshotted_run(&scene).await;
    only_the_skips_warn(&validate(pool, run).await);

    // A table created in public since the run began: VIOLATION, and listed.
    sqlx::query("CREATE TABLE public.migration_scratch (id int)")
        .execute(pool)
        .await
        .unwrap();
    let report = validate(pool, run).await;
    let zero = check(&report, "zero_tables");
    assert_eq!(zero["result"], "FAIL");
    assert_eq!(report["sacred_six_status"], "VIOLATION");
    assert_eq!(
        zero["details"]["tables_outside_six_list"],
        "public.migration_scratch"
    );
    assert_eq!(
        zero["details"]["created_since_start"],
        "public.migration_scratch"
    );
    assert_eq!(report["overall"], "FAIL");
    sqlx::query("DROP TABLE public.migration_scratch")
        .execute(pool)
        .await
        .unwrap();
    // One created in another schema is as much a violation: no table, anywhere.
    sqlx::raw_sql("CREATE SCHEMA elsewhere; CREATE TABLE elsewhere.t (id int)")
        .execute(pool)
        .await
        .unwrap();
    let report = validate(pool, run).await;
    assert_eq!(report["sacred_six_status"], "VIOLATION");
    assert_eq!(
        check(&report, "zero_tables")["details"]["created_since_start"],
        "elsewhere.t"
    );
    assert_eq!(check(&report, "zero_tables")["result"], "FAIL");
    sqlx::query("DROP SCHEMA elsewhere CASCADE")
        .execute(pool)
        .await
        .unwrap();
    only_the_skips_warn(&validate(pool, run).await);

    // An unbalanced line in a repost.
    exec(
        pool,
        "INSERT INTO universal_transaction_lines (organization_id, transaction_id, line_number, line_type,
                                                  line_amount, smart_code, line_data, created_by, updated_by)
         SELECT organization_id, id, 99, 'GL', 5, 'HERA.FIN.GL.LINE.EXTRA.v2',
                '{\"account_code\": \"9999\", \"side\": \"DR\"}', created_by, created_by
           FROM universal_transactions
          WHERE metadata ->> 'migration_id' = $1::text AND metadata ? 'original_transaction_id' LIMIT 1",
        run,
    )
    .await;
    let report = validate(pool, run).await;
    let gl = check(&report, "gl_balance");
    assert_eq!(gl["result"], "FAIL", "{gl}");
    assert_eq!(gl["details"]["unbalanced_transactions"], "1");
    assert_ne!(gl["details"]["balance_percentage"], "100.00");
    exec(
        pool,
        "DELETE FROM universal_transaction_lines WHERE line_number = 99 AND organization_id = $1",
        scene.org,
    )
    .await;
    only_the_skips_warn(&validate(pool, run).await);

    // An amount changed after the snapshot (on a transaction the run skipped).
    exec(
        pool,
        "UPDATE universal_transaction_lines SET line_amount = line_amount + 1
          WHERE id = (SELECT l.id FROM universal_transaction_lines l
                        JOIN universal_transactions t ON t.id = l.transaction_id
                       WHERE t.organization_id = $1 AND t.transaction_status = 'posted'
                         AND l.smart_code LIKE '%.GL.%' AND l.line_data ->> 'side' = 'DR'
                         AND hera_smart_code_is_v1(t.smart_code) AND NOT t.metadata ? 'reversal_of'
                       LIMIT 1)",
        scene.org,
    )
    .await;
    let report = validate(pool, run).await;
    let tb = check(&report, "trial_balance");
    assert_eq!(tb["result"], "FAIL");
    assert_eq!(tb["details"]["differences"], "1", "{tb}");
    assert_eq!(
        check(&report, "gl_balance")["result"],
        "PASS",
        "the run's own copies still balance"
    );

    // A migrated original put back by hand: the run's count no longer matches.
    exec(
        pool,
        "UPDATE universal_transactions SET transaction_status = 'posted', metadata = metadata - 'migration_run_id'
          WHERE id = (SELECT id FROM universal_transactions
                       WHERE metadata ->> 'migration_run_id' = $1::text AND transaction_status = 'reversed' LIMIT 1)",
        run,
    )
    .await;
    assert_eq!(
        check(&validate(pool, run).await, "completeness")["result"],
        "FAIL"
    );
}

#[tokio::test]
async fn a_run_without_snapshot_warns_and_an_unknown_run_is_not_found() {
    let Scene {
        _db,
        pool,
        org,
        actor,
    } = sql::scene(60).await;
    let (run, _) = sql::migrate(&pool, org, actor, 100).await;
    // As a run recorded before runs took snapshots.
    sqlx::query("UPDATE universal_transactions SET metadata = metadata - 'snapshot' WHERE id = $1")
        .bind(run)
        .execute(&pool)
        .await
        .unwrap();
    let report = validate(&pool, run).await;
    assert_eq!(check(&report, "trial_balance")["result"], "WARN");
    assert_eq!(check(&report, "zero_tables")["result"], "WARN");
    assert_eq!(report["overall"], "WARN", "{report:#}");
    let error = sqlx::query_scalar::<_, Value>("SELECT hera_migration_validate_v2($1)")
        .bind(Uuid::new_v4())
        .fetch_one(&pool)
        .await
        .unwrap_err();
    assert_eq!(sql::sqlstate(error), "P0002");
}

/// Each check is a function of its own, callable alone: what it answers is
/// what the report lists under its name.
#[tokio::test]
async fn each_check_answers_alone_what_the_report_says() {
    let scene = sql::scene(120).await;
    let run = snapshotted_run(&scene).await;
    let report = validate(&scene.pool, run).await;
    let (org, meta): (Uuid, Value) = sqlx::query_as(
        "SELECT organization_id, metadata FROM universal_transactions WHERE id = $1",
    )
    .bind(run)
    .fetch_one(&scene.pool)
    .await
    .unwrap();
    for (name, call) in [
        (
            "zero_tables",
            "SELECT hera_migration_check_zero_tables_v2($3 -> 'snapshot')",
        ),
        (
            "gl_balance",
            "SELECT hera_migration_check_gl_balance_v2($1, $2)",
        ),
        (
            "trial_balance",
            "SELECT hera_migration_check_trial_balance_v2($2, $3 -> 'snapshot')",
        ),
        (
            "completeness",
            "SELECT hera_migration_check_completeness_v2($1, $2, $3)",
        ),
    ] {
        let alone: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(call))
            .bind(run)
            .bind(org)
            .bind(&meta)
            .fetch_one(&scene.pool)
            .await
            .unwrap();
        assert_eq!(&alone, check(&report, name), "{name}");
    }
    // A snapshot that predates a table: the check alone says VIOLATION.
    sqlx::query("CREATE TABLE created_after_the_run (id int)")
        .execute(&scene.pool)
        .await
        .unwrap();
    let violation: Value =
        sqlx::query_scalar("SELECT hera_migration_check_zero_tables_v2($1 -> 'snapshot')")
            .bind(&meta)
            .fetch_one(&scene.pool)
            .await
            .unwrap();
    assert_eq!(violation["result"], "FAIL");
    assert_eq!(violation["details"]["sacred_six_status"], "VIOLATION");
}

/// A schema installed by a version whose validation took no allow_partial:
/// the next install retires the old signatures, leaving one function of each
/// name (an overload would make `hera_migration_validate_v2(id)` ambiguous).
#[tokio::test]
async fn an_install_over_the_old_signatures_leaves_one_function_of_each_name() {
    let scene = sql::scene(20).await;
    let pool = &scene.pool;
    sqlx::raw_sql(
        "CREATE FUNCTION hera_migration_validate_v2(p_run_id uuid) RETURNS jsonb
             LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
         CREATE FUNCTION hera_migration_check_completeness_v2(p_run_id uuid, p_org uuid, p_meta jsonb)
             RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;",
    )
    .execute(pool)
    .await
    .unwrap();
    hera_migrate::db::schema::install(pool)
        .await
        .expect("the install retires the old signatures");
    let signatures: Vec<String> = sqlx::query_scalar(
        "SELECT proname || '(' || pg_get_function_identity_arguments(oid) || ')' FROM pg_proc
          WHERE proname IN ('hera_migration_validate_v2', 'hera_migration_check_completeness_v2')
          ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        signatures,
        [
            "hera_migration_check_completeness_v2(p_run_id uuid, p_org uuid, p_meta jsonb, \
             p_allow_partial boolean)",
            "hera_migration_validate_v2(p_run_id uuid, p_allow_partial boolean)",
        ]
    );
    let run = snapshotted_run(&scene).await;
    assert_eq!(validate(pool, run).await["allow_partial"], false);
}
