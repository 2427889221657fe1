//! Runs are read per organization: another organization's run is not found
//! (and the probe is recorded), listings page newest first.
use hera_migrate::proto::*;
use serde_json::json;
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;

use crate::support::{
    TestApp, TestDatabase, as_user,
    fixtures::{self, Organization, security_validations},
};

async fn create_run(pool: &PgPool, org: &Organization) -> Uuid {
    sqlx::query_scalar("SELECT hera_migration_create_run_v2($1, $2, $3, 'req-1')")
        .bind(org.id)
        .bind(org.owner)
        .bind(json!({"from_date": "2024-01-01", "to_date": "2024-12-31", "batch_size": 500}))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The server, never adopting the runs these tests write straight into the
/// table (they would otherwise be executed, and end, while being read).
async fn server(db: &TestDatabase) -> TestApp {
    let mut settings = crate::support::app::test_settings(db.options());
    settings.engine.lease_check_interval_ms = 3_600_000;
    TestApp::spawn_with(settings).await
}

fn get(org: Uuid, run: Uuid) -> GetMigrationRequest {
    GetMigrationRequest {
        organization_id: org.to_string(),
        migration_id: run.to_string(),
    }
}

#[tokio::test]
async fn a_run_is_visible_in_its_organization_and_not_found_from_another() {
    let db = TestDatabase::create().await;
    let app = server(&db).await;
    let pool = db.pool().await;
    let (a, b) = (
        fixtures::organization(&pool).await,
        fixtures::organization(&pool).await,
    );
    let run = create_run(&pool, &a).await;
    let mut client = app.client().await;

    let seen = client
        .get_migration(as_user(get(a.id, run), a.staff))
        .await
        .unwrap()
        .into_inner()
        .into_migration();
    assert_eq!(seen.migration_id, run.to_string());
    assert_eq!(seen.state(), MigrationState::Running);
    assert_eq!(seen.phase(), MigrationPhase::Execution);
    assert_eq!(seen.started_by, a.owner.to_string());
    assert_eq!(seen.request_id, "req-1");
    let parameters = seen.parameters.unwrap();
    assert_eq!(
        (parameters.from_date.as_str(), parameters.batch_size),
        ("2024-01-01", 500)
    );

    // A member of B, in B: the run does not exist there, and the probe is recorded in B.
    let hidden = client
        .get_migration(as_user(get(b.id, run), b.owner))
        .await
        .expect_err("hidden");
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    assert!(
        !hidden.message().contains(&a.id.to_string()),
        "A is not revealed: {}",
        hidden.message()
    );
    let recorded = security_validations(&pool, b.id).await;
    assert_eq!(
        recorded,
        [(b.owner, "GetMigration".to_owned(), false, b.owner)]
    );

    // A member of B, in A: not a member there.
    let denied = client
        .get_migration(as_user(get(a.id, run), b.owner))
        .await
        .expect_err("denied");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(security_validations(&pool, a.id).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn listings_are_per_organization_newest_first_and_paged() {
    let db = TestDatabase::create().await;
    let app = server(&db).await;
    let pool = db.pool().await;
    let (a, b) = (
        fixtures::organization(&pool).await,
        fixtures::organization(&pool).await,
    );
    let mut runs_of_a = Vec::new();
    for _ in 0..3 {
        runs_of_a.push(create_run(&pool, &a).await.to_string());
    }
    create_run(&pool, &b).await;
    let mut client = app.client().await;
    let list = |token: &str, size: i32, states: Vec<i32>| {
        as_user(
            ListMigrationsRequest {
                organization_id: a.id.to_string(),
                states,
                page_size: size,
                page_token: token.into(),
            },
            a.staff,
        )
    };

    let first = client
        .list_migrations(list("", 2, vec![]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.migrations.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = client
        .list_migrations(list(&first.next_page_token, 2, vec![]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.migrations.len(), 1);
    assert!(second.next_page_token.is_empty());
    let listed: Vec<String> = first
        .migrations
        .iter()
        .chain(&second.migrations)
        .map(|m| m.migration_id.clone())
        .collect();
    let mut newest_first = runs_of_a.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);

    let succeeded = client
        .list_migrations(list("", 0, vec![MigrationState::Succeeded.into()]))
        .await
        .unwrap()
        .into_inner();
    assert!(succeeded.migrations.is_empty());
    let running = client
        .list_migrations(list("", 0, vec![MigrationState::Running.into()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(running.migrations.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn bad_ids_page_sizes_and_tokens_are_named() {
    let db = TestDatabase::create().await;
    let app = server(&db).await;
    let org = fixtures::organization(&db.pool().await).await;
    let mut client = app.client().await;
    let bad_id = client
        .get_migration(as_user(
            GetMigrationRequest {
                organization_id: org.id.to_string(),
                migration_id: "run-1".into(),
            },
            org.owner,
        ))
        .await
        .expect_err("invalid");
    assert_eq!(bad_id.code(), Code::InvalidArgument);
    assert!(
        bad_id.message().starts_with("migration_id:"),
        "{}",
        bad_id.message()
    );
    let (running, unknown) = (MigrationState::Running as i32, 99);
    for (size, token, states, field) in [
        (501, "", vec![], "page_size"),
        (-1, "", vec![], "page_size"),
        (0, "garbage", vec![], "page_token"),
        // A number no state has is refused, not dropped (which would list every run).
        (0, "", vec![running, unknown], "states[1]"),
    ] {
        let status = client
            .list_migrations(as_user(
                ListMigrationsRequest {
                    organization_id: org.id.to_string(),
                    page_size: size,
                    page_token: token.into(),
                    states,
                },
                org.owner,
            ))
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    app.stop().await;
}
