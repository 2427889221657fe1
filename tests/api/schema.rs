//! Zero tables, idempotent installs, and attach mode on an existing HERA schema.
use hera_migrate::db::schema::{self, SchemaMode};
use sqlx::PgPool;

use crate::support::{TestApp, TestDatabase, catalog, hera::hera_production};

fn public(tables: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = tables.iter().map(|t| format!("public.{t}")).collect();
    names.sort();
    names
}

/// The HERA fixture's tables beyond the six (hera-migrate must leave them alone).
const HERA_OTHER_TABLES: [&str; 4] = [
    "entity_approval_actions",
    "entity_approval_requests",
    "entity_workflow_audit",
    "entity_workflow_configs",
];

/// Its views and materialized view: `catalog::tables` lists those too.
const HERA_VIEWS: [&str; 4] = [
    "rpt_entity_profiles",
    "v_hera_accounts",
    "v_period_close_dashboard",
    "v_universal_transaction_lines_drcr",
];

/// Whether an install of ours is recorded in the database.
async fn installed(pool: &PgPool) -> bool {
    sqlx::query_scalar("SELECT to_regprocedure('hera_migrate_schema_info()') IS NOT NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn install_creates_exactly_the_six_tables_and_twice_changes_nothing() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;

    let first = schema::install(&pool).await.expect("first install");
    assert_eq!(first.mode, SchemaMode::Owned);
    assert_eq!(catalog::tables(&pool).await, public(&schema::SACRED_SIX));
    let after_first = catalog::snapshot(&pool).await;

    let second = schema::install(&pool).await.expect("second install");
    assert_eq!(second, first);
    assert_eq!(catalog::snapshot(&pool).await, after_first);
    assert_eq!(catalog::tables(&pool).await, public(&schema::SACRED_SIX));

    let recorded: serde_json::Value = sqlx::query_scalar("SELECT hera_migrate_schema_info()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        recorded,
        serde_json::json!({"version": schema::SCHEMA_VERSION, "mode": "owned"})
    );
}

#[tokio::test]
async fn concurrent_installs_both_succeed() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let (a, b) = tokio::join!(schema::install(&pool), schema::install(&pool));
    assert_eq!(a.expect("first"), b.expect("second"));
    assert_eq!(catalog::tables(&pool).await, public(&schema::SACRED_SIX));
}

/// A server that starts while the business writes (or another server's
/// batch runs) takes no table lock: a reinstall finds indexes and row
/// security in place and leaves them, instead of waiting behind the writers
/// and blocking everyone else (or deadlocking with a batch).
#[tokio::test]
async fn a_reinstall_waits_for_no_writer() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    schema::install(&pool).await.unwrap();
    let mut writer = pool.begin().await.unwrap();
    for table in [
        "universal_transactions",
        "universal_transaction_lines",
        "core_entities",
        "core_relationships",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "LOCK TABLE {table} IN ROW EXCLUSIVE MODE"
        )))
        .execute(&mut *writer)
        .await
        .unwrap();
    }
    let mut installer = <sqlx::PgConnection as sqlx::Connection>::connect_with(&db.options())
        .await
        .unwrap();
    sqlx::query("SET lock_timeout = '2s'")
        .execute(&mut installer)
        .await
        .unwrap();
    schema::install_on(&mut installer)
        .await
        .expect("a reinstall does not wait on the writers' locks");
    writer.rollback().await.unwrap();
}

#[tokio::test]
async fn attach_mode_leaves_every_table_column_constraint_and_trigger_as_it_was() {
    let (db, pool) = hera_production().await;
    let before = catalog::snapshot(&pool).await;
    assert!(
        before
            .iter()
            .any(|line| line.starts_with("trigger ") && line.contains("enforce_actor_audit")),
        "fixture has HERA's triggers"
    );
    let listed = catalog::tables(&pool).await;

    let info = schema::install(&pool).await.expect("attach");
    assert_eq!(info.mode, SchemaMode::Attached);
    assert_eq!(catalog::snapshot(&pool).await, before);

    // The server attaches the same way, and a second start changes nothing either.
    let app = TestApp::spawn(db.options()).await;
    app.stop().await;
    assert_eq!(catalog::snapshot(&pool).await, before);
    // No table, view or materialized view added ...
    assert_eq!(catalog::tables(&pool).await, listed);
    let mut expected = schema::SACRED_SIX.to_vec();
    expected.extend(HERA_OTHER_TABLES);
    assert_eq!(catalog::base_tables(&pool).await, public(&expected));
    // ... and beside the tables, only HERA's own views.
    expected.extend(HERA_VIEWS);
    assert_eq!(listed, public(&expected));
}

#[tokio::test]
async fn attach_mode_refuses_a_schema_lacking_needed_columns_and_names_each() {
    let (_db, pool) = hera_production().await;
    // HERA's DR/CR view reads line_data and its primary-role index tests
    // is_active: they go first (as they would have to in HERA).
    sqlx::raw_sql(
        "ALTER TABLE universal_transactions DROP COLUMN fiscal_period;
         ALTER TABLE universal_transaction_lines DROP COLUMN line_data CASCADE;
         DROP INDEX ux_has_role_primary_per_org_user;
         ALTER TABLE core_relationships ALTER COLUMN is_active TYPE text;",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before = catalog::snapshot(&pool).await;

    let error = schema::install(&pool)
        .await
        .expect_err("refused")
        .to_string();
    for problem in [
        "universal_transactions.fiscal_period is missing",
        "universal_transaction_lines.line_data is missing",
        "core_relationships.is_active is text, needs boolean",
    ] {
        assert!(error.contains(problem), "{problem} in: {error}");
    }
    assert_eq!(catalog::snapshot(&pool).await, before);
    assert!(!installed(&pool).await, "a refused attach installs nothing");
}

#[tokio::test]
async fn part_of_the_six_is_refused_naming_the_missing_tables() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    sqlx::raw_sql("CREATE TABLE core_organizations (id uuid PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    let error = schema::install(&pool)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("core_entities") && error.contains("universal_transaction_lines"),
        "{error}"
    );
    assert_eq!(
        catalog::tables(&pool).await,
        public(&["core_organizations"])
    );
}

#[tokio::test]
async fn attach_mode_advises_the_indexes_it_would_need_instead_of_creating_them() {
    let (_db, pool) = hera_production().await;
    let mut conn = pool.acquire().await.unwrap();
    let missing: Vec<&str> = hera_migrate::db::advice::missing_indexes(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|advice| advice.table)
        .collect();
    // An index serves when its key starts with the advised columns, partial
    // or not. HERA's partial idx_ut_org_date_id_active (organization_id,
    // transaction_date, id) serves transactions, the unique (transaction_id,
    // line_number) serves lines, and the partial unique
    // ux_has_role_primary_per_org_user (organization_id, from_entity_id)
    // serves relationships, although it covers HAS_ROLE rows only (the advice
    // looks at keys, not predicates). HERA has no index on core_entities
    // besides its primary key.
    assert_eq!(missing, ["core_entities"]);

    // An owned schema has them all.
    let db = TestDatabase::create().await;
    let owned = db.pool().await;
    schema::install(&owned).await.unwrap();
    let mut conn = owned.acquire().await.unwrap();
    assert!(
        hera_migrate::db::advice::missing_indexes(&mut conn)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A HERA database that already has a function named like one of ours (an
/// earlier sketch of the guide's functions, say) is refused, naming it: ours
/// would replace it, or overload it and make its callers' calls ambiguous.
#[tokio::test]
async fn attach_refuses_to_replace_or_overload_a_function_it_did_not_install() {
    let (_db, pool) = hera_production().await;
    sqlx::raw_sql(
        "CREATE FUNCTION hera_migration_preview_candidates_v2(p_organization_id uuid, p_from date,
                                                              p_to date, p_limit integer DEFAULT 1000)
         RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before = catalog::snapshot(&pool).await;
    let error = schema::install(&pool)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("hera_migration_preview_candidates_v2(p_organization_id uuid"),
        "{error}"
    );
    assert_eq!(catalog::snapshot(&pool).await, before);
    assert!(!installed(&pool).await, "a refused attach installs nothing");
}
