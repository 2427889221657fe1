//! Zero tables, idempotent installs, and attach mode on an existing HERA schema.
use hera_migrate::db::schema::{self, SchemaMode};
use sqlx::PgPool;

use crate::support::{TestApp, TestDatabase, catalog};

const HERA_PRODUCTION_LIKE: &str = include_str!("../fixtures/hera_production_like.sql");

fn public(tables: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = tables.iter().map(|t| format!("public.{t}")).collect();
    names.sort();
    names
}

async fn hera_production_like() -> (TestDatabase, PgPool) {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    sqlx::raw_sql(HERA_PRODUCTION_LIKE)
        .execute(&pool)
        .await
        .expect("the fixture installs");
    (db, pool)
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

#[tokio::test]
async fn attach_mode_leaves_every_table_column_constraint_and_trigger_as_it_was() {
    let (db, pool) = hera_production_like().await;
    let before = catalog::snapshot(&pool).await;
    assert!(
        before.iter().any(|line| line.contains("actor_audit")),
        "fixture has triggers"
    );

    let info = schema::install(&pool).await.expect("attach");
    assert_eq!(info.mode, SchemaMode::Attached);
    assert_eq!(catalog::snapshot(&pool).await, before);

    // The server attaches the same way, and a second start changes nothing either.
    let app = TestApp::spawn(db.options()).await;
    app.stop().await;
    assert_eq!(catalog::snapshot(&pool).await, before);
    let mut expected = schema::SACRED_SIX.to_vec();
    expected.push("hera_legacy_import_log");
    assert_eq!(catalog::tables(&pool).await, public(&expected));
}

#[tokio::test]
async fn attach_mode_refuses_a_schema_lacking_needed_columns_and_names_each() {
    let (_db, pool) = hera_production_like().await;
    sqlx::raw_sql(
        "ALTER TABLE universal_transactions DROP COLUMN fiscal_period;
         ALTER TABLE universal_transaction_lines DROP COLUMN line_data;
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
    let installed: bool =
        sqlx::query_scalar("SELECT to_regprocedure('hera_migrate_schema_info()') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!installed, "a refused attach installs nothing");
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
    let (_db, pool) = hera_production_like().await;
    let mut conn = pool.acquire().await.unwrap();
    let missing: Vec<&str> = hera_migrate::db::advice::missing_indexes(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|advice| advice.table)
        .collect();
    // The fixture has (organization_id, transaction_type) on transactions and
    // the unique (transaction_id, line_number) on lines: the latter serves.
    assert_eq!(
        missing,
        [
            "universal_transactions",
            "core_entities",
            "core_relationships"
        ]
    );

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
