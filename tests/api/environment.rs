//! CheckEnvironment through the real server: every named check, each a real
//! reading of the database (PASS, WARN, FAIL or UNKNOWN, with a remedy for
//! what does not pass), backups never a fake PASS, advised indexes with
//! their DDL, and only members may ask.
use hera_migrate::proto::*;
use tonic::Code;
use uuid::Uuid;

use crate::support::{World, as_user};

const CHECKS: &[&str] = &[
    "database_version",
    "max_connections",
    "statement_timeout",
    "lock_timeout",
    "wal_level",
    "archive_mode",
    "autovacuum",
    "schema_mode",
    "column_contract",
    "index_ut_org_date_idx",
    "index_utl_transaction_idx",
    "index_ce_org_type_idx",
    "index_cr_org_from_idx",
    "row_level_security",
    "service_pool",
    "replicas",
    "backup_wal_archiving",
    "backup_last_archived",
    "backup_replication_slots",
    "backup_base_backup",
];

pub fn request(org: Uuid) -> CheckEnvironmentRequest {
    CheckEnvironmentRequest {
        organization_id: org.to_string(),
    }
}

pub fn check<'a>(response: &'a CheckEnvironmentResponse, name: &str) -> &'a EnvironmentCheck {
    response
        .checks
        .iter()
        .find(|check| check.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {response:#?}"))
}

/// Every named check, once each, and every one a real answer: a detail,
/// and a remedy whenever it does not pass.
pub fn assert_every_check_answered(response: &CheckEnvironmentResponse) {
    let names: Vec<&str> = response.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, CHECKS, "{response:#?}");
    for check in &response.checks {
        assert_ne!(check.result(), CheckResult::Unspecified, "{check:?}");
        assert!(!check.detail.is_empty(), "{check:?}");
        assert!(
            !check.detail.contains("not implemented"),
            "{check:?} is a real check"
        );
        if check.result() == CheckResult::Pass {
            assert!(check.remedy.is_empty(), "{check:?}");
        } else {
            assert!(!check.remedy.is_empty(), "{check:?} says what to do");
        }
    }
    assert_ne!(
        check(response, "backup_base_backup").result(),
        CheckResult::Pass,
        "PostgreSQL cannot see base backups"
    );
}

async fn setting(pool: &sqlx::PgPool, name: &str) -> String {
    sqlx::query_scalar("SELECT current_setting($1)")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_check_answers_and_backups_are_unknown_without_archiving() {
    let w = World::new().await;
    let mut client = w.app.client().await;
    // Any member may check (it only reads).
    let response = client
        .check_environment(as_user(request(w.org.id), w.org.staff))
        .await
        .expect("the environment checked")
        .into_inner();
    assert_every_check_answered(&response);

    let version_num: i32 = setting(&w.pool, "server_version_num")
        .await
        .parse()
        .unwrap();
    assert!(
        response.database_version.starts_with("PostgreSQL "),
        "{response:?}"
    );
    assert_eq!(
        check(&response, "database_version").result(),
        if version_num >= 150_000 {
            CheckResult::Pass
        } else {
            CheckResult::Warn
        }
    );
    assert_eq!(response.schema_version, "2");
    assert_eq!(response.schema_mode(), SchemaMode::Owned);
    for name in [
        "schema_mode",
        "column_contract",
        "row_level_security",
        "index_ut_org_date_idx",
        "index_utl_transaction_idx",
        "index_ce_org_type_idx",
        "index_cr_org_from_idx",
        "service_pool",
    ] {
        assert_eq!(
            check(&response, name).result(),
            CheckResult::Pass,
            "{:?}",
            check(&response, name)
        );
    }
    assert!(
        check(&response, "row_level_security")
            .detail
            .contains("hera_migrate_app")
    );

    if setting(&w.pool, "archive_mode").await == "off" {
        assert_eq!(check(&response, "archive_mode").result(), CheckResult::Warn);
        for name in ["backup_wal_archiving", "backup_last_archived"] {
            let backup = check(&response, name);
            assert_eq!(backup.result(), CheckResult::Unknown, "{backup:?}");
            assert!(backup.detail.contains("archive_mode off"), "{backup:?}");
        }
    }
    let replicas: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_replication")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    if replicas == 0 {
        let check = check(&response, "replicas");
        assert_eq!(check.result(), CheckResult::Pass, "{check:?}");
        assert!(check.detail.contains("no replicas visible"), "{check:?}");
    }
    let slots: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_replication_slots")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    if slots == 0 {
        let check = check(&response, "backup_replication_slots");
        assert_eq!(check.result(), CheckResult::Pass, "{check:?}");
    }
    w.app.stop().await;
}

#[tokio::test]
async fn a_missing_index_is_a_warning_with_its_ddl_and_strangers_are_denied() {
    let w = World::new().await;
    sqlx::query("DROP INDEX ut_org_date_idx")
        .execute(&w.pool)
        .await
        .unwrap();
    let mut client = w.app.client().await;
    let response = client
        .check_environment(as_user(request(w.org.id), w.org.owner))
        .await
        .unwrap()
        .into_inner();
    assert_every_check_answered(&response);
    let index = check(&response, "index_ut_org_date_idx");
    assert_eq!(index.result(), CheckResult::Warn, "{index:?}");
    assert_eq!(
        index.remedy,
        "CREATE INDEX CONCURRENTLY ut_org_date_idx ON universal_transactions \
         (organization_id, transaction_date, id)"
    );
    assert!(index.detail.contains("keyset order"), "{index:?}");
    let other = check(&response, "index_ce_org_type_idx");
    assert_eq!(other.result(), CheckResult::Pass, "{other:?}");
    assert!(
        other.detail.contains("served by ce_org_type_idx"),
        "{other:?}"
    );

    let stranger = Uuid::new_v4();
    let denied = client
        .check_environment(as_user(request(w.org.id), stranger))
        .await
        .expect_err("a stranger may not check");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let nowhere = client
        .check_environment(as_user(request(Uuid::new_v4()), w.org.owner))
        .await
        .expect_err("no such organization");
    assert_eq!(nowhere.code(), Code::PermissionDenied, "{nowhere:?}");
    let malformed = client
        .check_environment(as_user(
            CheckEnvironmentRequest {
                organization_id: "nope".into(),
            },
            w.org.owner,
        ))
        .await
        .expect_err("not a uuid");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    w.app.stop().await;
}

/// Attached to a database shaped like HERA production: the schema is
/// reported as attached, the index HERA lacks is advised with its DDL, HERA's
/// row-level security is reported, and the performance samples pass HERA's
/// triggers and constraints while leaving its ledger as it was.
#[tokio::test]
async fn attached_to_hera_production() {
    use crate::performance::{MEASUREMENTS, business_ledger, measure};
    use crate::support::{TestApp, hera};

    let (db, pool) = hera::hera_production().await;
    let tenant = hera::tenant(&pool, "A", 40).await;
    let app = TestApp::spawn(db.options()).await;
    let mut client = app.client().await;
    let owner = tenant.users.owner;
    let response = client
        .check_environment(as_user(request(tenant.id), owner))
        .await
        .expect("the environment checked")
        .into_inner();
    assert_every_check_answered(&response);
    assert_eq!(response.schema_mode(), SchemaMode::Attached);
    for name in ["schema_mode", "column_contract"] {
        assert_eq!(check(&response, name).result(), CheckResult::Pass);
    }
    let index = check(&response, "index_ce_org_type_idx");
    assert_eq!(index.result(), CheckResult::Warn, "{index:?}");
    assert_eq!(
        index.remedy,
        "CREATE INDEX CONCURRENTLY ce_org_type_idx ON core_entities (organization_id, entity_type)"
    );
    let served = check(&response, "index_ut_org_date_idx");
    assert!(
        served.detail.contains("idx_ut_org_date_id_active"),
        "{served:?}"
    );
    let rls = check(&response, "row_level_security");
    assert!(rls.detail.contains("allow_all_authenticated"), "{rls:?}");

    let ledger = business_ledger(&pool, tenant.id).await;
    let measured = client
        .measure_performance(as_user(
            measure(tenant.id, MeasurementKind::Baseline, 2),
            owner,
        ))
        .await
        .expect("measured")
        .into_inner();
    let names: Vec<&str> = measured
        .measurements
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, MEASUREMENTS);
    for m in &measured.measurements {
        assert_eq!(m.samples, 2, "{m:?}: HERA's rules let every sample through");
    }
    assert_eq!(business_ledger(&pool, tenant.id).await, ledger);
    app.stop().await;
}
