//! Identity, roles and organization isolation on every RPC.
use std::time::Duration;

use hera_migrate::{auth::token, proto::*};
use tonic::Code;
use uuid::Uuid;

use crate::support::{
    TestApp, TestDatabase, World, as_user, authorized,
    fixtures::{self, row_counts, security_validations},
    reason, rpcs,
    runs::preview_2024,
};

/// An HS256 token with `exp` in the past.
fn expired_token(user: Uuid) -> String {
    #[derive(serde::Serialize)]
    struct Claims {
        sub: String,
        exp: u64,
    }
    let claims = Claims {
        sub: user.to_string(),
        exp: 1_000_000,
    };
    jsonwebtoken_encode(&claims)
}

fn jsonwebtoken_encode<T: serde::Serialize>(claims: &T) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(crate::support::app::TEST_SECRET.as_bytes()),
    )
    .unwrap()
}

fn start_of(organization: Uuid) -> StartMigrationRequest {
    StartMigrationRequest {
        organization_id: organization.to_string(),
        from_date: "2024-01-01".into(),
        to_date: "2024-12-31".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_rpc_refuses_missing_garbage_expired_and_foreign_tokens_and_writes_nothing() {
    let World {
        db: _db,
        app,
        pool,
        org,
    } = World::new().await;
    let before = row_counts(&pool).await;

    let foreign = token::mint(b"another-secret", org.owner, Duration::from_secs(600)).unwrap();
    let expired = expired_token(org.owner);
    let cases: [(&str, Option<&str>); 5] = [
        ("no token", None),
        ("garbage", Some("not.a.jwt")),
        ("expired", Some(&expired)),
        ("signed with another secret", Some(&foreign)),
        ("not a bearer", Some("")),
    ];
    for (case, token) in cases {
        for (rpc, answer) in rpcs::call_every_rpc(&app, org.id, token).await {
            let status = answer.expect_err(rpc);
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{case}, {rpc}: {status:?}"
            );
            assert!(
                status.message().starts_with("authorization:"),
                "{case}, {rpc}: {}",
                status.message()
            );
        }
    }
    assert_eq!(
        row_counts(&pool).await,
        before,
        "refused calls wrote nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_member_of_one_organization_is_denied_in_another_and_each_attempt_is_recorded_there() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let pool = db.pool().await;
    let (a, b) = (
        fixtures::organization(&pool).await,
        fixtures::organization(&pool).await,
    );
    let mut client = app.client().await;

    let preview = client
        .preview_candidates(as_user(preview_2024(b.id), a.owner))
        .await
        .expect_err("denied");
    assert_eq!(preview.code(), Code::PermissionDenied, "{preview:?}");
    assert_eq!(reason(&preview), "NOT_A_MEMBER");
    assert!(
        preview.message().contains("not an active member"),
        "{}",
        preview.message()
    );

    let start = client
        .start_migration(as_user(start_of(b.id), a.owner))
        .await
        .expect_err("denied");
    assert_eq!(start.code(), Code::PermissionDenied);

    let recorded = security_validations(&pool, b.id).await;
    assert_eq!(
        recorded,
        [
            (a.owner, "PreviewCandidates".to_owned(), false, a.owner),
            (a.owner, "StartMigration".to_owned(), false, a.owner),
        ]
    );
    assert!(
        security_validations(&pool, a.id).await.is_empty(),
        "nothing recorded in A"
    );
    app.stop().await;
}

/// What a caller who belongs to neither is told by each RPC in `organization`.
async fn non_member_answers(
    client: &mut crate::support::runs::Client,
    user: Uuid,
    organization: Uuid,
) -> Vec<(&'static str, tonic::Status)> {
    let org = organization.to_string();
    let run = Uuid::new_v4().to_string();
    let run_of = || (org.clone(), run.clone());
    vec![
        (
            "PreviewCandidates",
            client
                .preview_candidates(as_user(preview_2024(organization), user))
                .await
                .expect_err("PreviewCandidates"),
        ),
        (
            "GetMigration",
            client
                .get_migration(as_user(
                    GetMigrationRequest {
                        organization_id: run_of().0,
                        migration_id: run_of().1,
                    },
                    user,
                ))
                .await
                .expect_err("GetMigration"),
        ),
        (
            "StartMigration",
            client
                .start_migration(as_user(start_of(organization), user))
                .await
                .map(drop)
                .expect_err("StartMigration"),
        ),
        (
            "ValidateMigration",
            client
                .validate_migration(as_user(
                    ValidateMigrationRequest {
                        organization_id: run_of().0,
                        migration_id: run_of().1,
                        allow_partial: false,
                    },
                    user,
                ))
                .await
                .expect_err("ValidateMigration"),
        ),
        (
            "CancelMigration",
            client
                .cancel_migration(as_user(
                    CancelMigrationRequest {
                        organization_id: run_of().0,
                        migration_id: run_of().1,
                        ..Default::default()
                    },
                    user,
                ))
                .await
                .expect_err("CancelMigration"),
        ),
        (
            "CheckSecurity",
            client
                .check_security(as_user(
                    CheckSecurityRequest {
                        organization_id: org.clone(),
                        ..Default::default()
                    },
                    user,
                ))
                .await
                .expect_err("CheckSecurity"),
        ),
    ]
}

#[tokio::test]
async fn a_non_member_is_told_the_same_whether_or_not_the_organization_exists() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let pool = db.pool().await;
    let (a, b) = (
        fixtures::organization(&pool).await,
        fixtures::organization(&pool).await,
    );
    let nowhere = Uuid::new_v4();
    let mut client = app.client().await;
    let before = row_counts(&pool).await;

    let existing = non_member_answers(&mut client, a.owner, b.id).await;
    let missing = non_member_answers(&mut client, a.owner, nowhere).await;
    for ((rpc, there), (_, not_there)) in existing.iter().zip(&missing) {
        assert_eq!(there.code(), Code::PermissionDenied, "{rpc}: {there:?}");
        assert!(
            there.message().starts_with("organization_id: "),
            "{rpc}: {}",
            there.message()
        );
        assert_eq!(
            (there.code(), there.message(), there.details()),
            (not_there.code(), not_there.message(), not_there.details()),
            "{rpc}: an existing and a missing organization answer alike"
        );
        assert!(
            !there.message().contains(&b.id.to_string()),
            "{rpc}: {}",
            there.message()
        );
    }

    // Recorded where the organization exists, and only there.
    let recorded = security_validations(&pool, b.id).await;
    let operations: Vec<&str> = recorded.iter().map(|(_, op, _, _)| op.as_str()).collect();
    // CheckSecurity records the operation it was asked about (StartMigration).
    let expected = [
        "PreviewCandidates",
        "GetMigration",
        "StartMigration",
        "ValidateMigration",
        "CancelMigration",
        "StartMigration",
    ];
    assert_eq!(operations, expected);
    assert!(
        recorded
            .iter()
            .all(|(user, _, allowed, by)| *user == a.owner && !allowed && *by == a.owner)
    );
    let mut after = row_counts(&pool).await;
    // The denials, and the head of B's audit chain, which they began.
    after[4] -= recorded.len() as i64 + 1;
    assert_eq!(after, before, "nothing but B's denials was written");
    assert!(security_validations(&pool, a.id).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn staff_may_preview_but_not_start_and_owners_and_finance_admins_may_start() {
    let World {
        db: _db,
        app,
        pool,
        org,
    } = World::new().await;
    let mut client = app.client().await;
    let start = |user| as_user(start_of(org.id), user);

    let preview = client
        .preview_candidates(as_user(preview_2024(org.id), org.staff))
        .await
        .expect("staff may preview")
        .into_inner();
    assert_eq!(preview.organization_id, org.id.to_string());

    let denied = client
        .start_migration(start(org.staff))
        .await
        .expect_err("denied");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(reason(&denied), "ROLE_NOT_PERMITTED");
    let info = tonic_types::StatusExt::get_error_details(&denied)
        .error_info()
        .cloned();
    assert_eq!(info.unwrap().metadata["role"], "ORG_EMPLOYEE");
    assert!(
        denied
            .message()
            .contains("ORG_EMPLOYEE may not StartMigration"),
        "{}",
        denied.message()
    );

    for steering in [org.owner, org.finance_admin] {
        let mut events = client
            .start_migration(start(steering))
            .await
            .expect("a steering role may start")
            .into_inner();
        let mut last = None;
        while let Some(event) = tokio_stream::StreamExt::next(&mut events).await {
            last = Some(event.unwrap().into_progress());
        }
        assert_eq!(last.unwrap().state(), MigrationState::Succeeded);
    }
    let recorded = security_validations(&pool, org.id).await;
    assert_eq!(
        recorded,
        [(org.staff, "StartMigration".to_owned(), false, org.staff)],
        "the denial is on the record, written as the caller"
    );
    app.stop().await;
}

#[tokio::test]
async fn check_security_reports_the_role_and_right_and_records_the_check() {
    let World {
        db: _db,
        app,
        pool,
        org,
    } = World::new().await;
    let mut client = app.client().await;
    let check = |user, operation: Operation| {
        as_user(
            CheckSecurityRequest {
                organization_id: org.id.to_string(),
                operation: operation.into(),
            },
            user,
        )
    };

    let owner = client
        .check_security(check(org.owner, Operation::Unspecified))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(owner.user_id, org.owner.to_string());
    assert_eq!(owner.role, "ORG_OWNER");
    assert!(owner.migration_allowed);
    let audit_id: Uuid = owner.audit_transaction_id.parse().unwrap();

    let staff = client
        .check_security(check(org.staff, Operation::RollbackMigration))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(staff.role, "ORG_EMPLOYEE");
    assert!(!staff.migration_allowed);
    assert!(
        staff
            .reasons
            .iter()
            .any(|r| r.contains("may not RollbackMigration")),
        "{:?}",
        staff.reasons
    );

    let (smart_code, created_by, metadata): (String, Uuid, serde_json::Value) = sqlx::query_as(
        "SELECT smart_code, created_by, metadata FROM universal_transactions WHERE id = $1",
    )
    .bind(audit_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        smart_code,
        "HERA.ACCOUNTING.MIGRATION.SECURITY.VALIDATION.v2"
    );
    assert_eq!(created_by, org.owner);
    assert_eq!(metadata["user_role"], "ORG_OWNER");
    assert_eq!(metadata["migration_allowed"], true);

    // A number no Operation has (a client built from a newer proto, say).
    let mut unknown = check(org.owner, Operation::Unspecified);
    unknown.get_mut().operation = 99;
    let bad = client.check_security(unknown).await.expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("operation:"), "{}", bad.message());
    app.stop().await;
}

#[tokio::test]
async fn malformed_organizations_are_named_and_unknown_ones_denied_writing_nothing() {
    let World {
        db: _db,
        app,
        pool,
        org,
    } = World::new().await;
    let mut client = app.client().await;
    let before = row_counts(&pool).await;

    let malformed = client
        .check_security(as_user(
            CheckSecurityRequest {
                organization_id: "acme".into(),
                ..Default::default()
            },
            org.owner,
        ))
        .await
        .expect_err("invalid");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(
        malformed.message().starts_with("organization_id:"),
        "{}",
        malformed.message()
    );

    let unknown = client
        .check_security(as_user(
            CheckSecurityRequest {
                organization_id: Uuid::new_v4().to_string(),
                ..Default::default()
            },
            org.owner,
        ))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::PermissionDenied, "{unknown:?}");
    assert!(
        unknown.message().starts_with("organization_id:"),
        "{}",
        unknown.message()
    );
    assert_eq!(row_counts(&pool).await, before);
    app.stop().await;
}

#[tokio::test]
async fn row_level_security_confines_the_service_role_to_one_organization_even_without_a_filter() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let admin = db.pool().await;
    let (a, b) = (
        fixtures::organization(&admin).await,
        fixtures::organization(&admin).await,
    );

    // On the server's own pool, deliberately forgetting `WHERE organization_id = ...`.
    let mut tx = hera_migrate::db::scope::begin(&app.service_pool, a.id)
        .await
        .unwrap();
    let visible: Vec<Uuid> =
        sqlx::query_scalar("SELECT DISTINCT organization_id FROM core_relationships")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(visible, [a.id]);
    let organizations: i64 = sqlx::query_scalar("SELECT count(*) FROM core_organizations")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(organizations, 1);
    let cross_write =
        sqlx::query("UPDATE core_entities SET entity_name = 'hijacked' WHERE organization_id = $1")
            .bind(b.id)
            .execute(&mut *tx)
            .await
            .unwrap();
    assert_eq!(
        cross_write.rows_affected(),
        0,
        "B's rows are invisible to A's transaction"
    );
    let insert_into_b = sqlx::query(
        "INSERT INTO core_entities (organization_id, entity_type, entity_name, created_by, updated_by)
         VALUES ($1, 'X', 'x', $2, $2)",
    )
    .bind(b.id)
    .bind(a.owner)
    .execute(&mut *tx)
    .await;
    assert!(
        insert_into_b.is_err(),
        "writing into B from A's transaction is refused"
    );
    drop(tx);

    // Outside any organization's transaction, the service role sees nothing.
    let unscoped: i64 = sqlx::query_scalar("SELECT count(*) FROM core_entities")
        .fetch_one(&app.service_pool)
        .await
        .unwrap();
    assert_eq!(unscoped, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_token_for_a_bearer_with_odd_scheme_case_is_accepted() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let org = fixtures::organization(&db.pool().await).await;
    let mut client = app.client().await;
    let mut request = authorized(
        CheckSecurityRequest {
            organization_id: org.id.to_string(),
            ..Default::default()
        },
        &crate::support::app::token_for(org.owner),
    );
    let value = request
        .metadata()
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .replace("Bearer", "bearer");
    request
        .metadata_mut()
        .insert("authorization", value.parse().unwrap());
    client
        .check_security(request)
        .await
        .expect("bearer is case-insensitive");
    app.stop().await;
}

#[tokio::test]
async fn rs256_tokens_verify_with_the_configured_public_key() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let db = TestDatabase::create().await;
    let mut settings = crate::support::app::test_settings(db.options());
    settings.auth.jwt_public_key_file = Some(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/jwt_test_rs256.pub"
        )
        .into(),
    );
    let app = TestApp::spawn_with(settings).await;
    let org = fixtures::organization(&db.pool().await).await;

    #[derive(serde::Serialize)]
    struct Claims {
        sub: String,
        exp: u64,
    }
    let key = EncodingKey::from_rsa_pem(include_bytes!("../fixtures/jwt_test_rs256.key")).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = encode(
        &Header::new(Algorithm::RS256),
        &Claims {
            sub: org.owner.to_string(),
            exp,
        },
        &key,
    )
    .unwrap();
    let answer = app
        .client()
        .await
        .check_security(authorized(
            CheckSecurityRequest {
                organization_id: org.id.to_string(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("an RS256 token signed by the matching private key")
        .into_inner();
    assert_eq!(answer.role, "ORG_OWNER");
    app.stop().await;
}

#[tokio::test]
async fn a_role_granted_by_has_role_counts_when_member_of_names_none() {
    let World {
        db: _db,
        app,
        pool,
        org,
    } = World::new().await;
    let accountant = Uuid::new_v4();
    sqlx::query(
        "WITH u AS (
             INSERT INTO core_entities (id, organization_id, entity_type, entity_name, created_by, updated_by)
             VALUES ($2, $1, 'USER', 'accountant', $3, $3) RETURNING id),
         org_entity AS (SELECT id FROM core_entities WHERE organization_id = $1 AND entity_type = 'ORGANIZATION')
         INSERT INTO core_relationships (organization_id, from_entity_id, to_entity_id, relationship_type,
                                         relationship_data, created_by, updated_by)
         SELECT $1, u.id, o.id, t.kind, t.data, $3, $3
           FROM u, org_entity o,
                (VALUES ('MEMBER_OF', '{}'::jsonb), ('HAS_ROLE', '{\"role_code\": \"ORG_ADMIN\"}'::jsonb)) AS t (kind, data)",
    )
    .bind(org.id)
    .bind(accountant)
    .bind(org.owner)
    .execute(&pool)
    .await
    .unwrap();
    let answer = app
        .client()
        .await
        .check_security(as_user(
            CheckSecurityRequest {
                organization_id: org.id.to_string(),
                ..Default::default()
            },
            accountant,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.role, "ORG_ADMIN");
    assert!(answer.migration_allowed);
    app.stop().await;
}

#[test]
fn the_token_command_mints_a_token_for_the_user() {
    let user = Uuid::new_v4();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hera-migrate"))
        .args(["token", "--user-id", &user.to_string(), "--ttl", "5m"])
        .env("HERA_JWT_SECRET", crate::support::app::TEST_SECRET)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap();
    let verifier = hera_migrate::auth::TokenVerifier::new(
        Some(crate::support::app::TEST_SECRET.as_bytes()),
        None,
    )
    .unwrap();
    assert_eq!(verifier.verify(token.trim()).unwrap().user_id, user);

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_hera-migrate"))
        .args(["token", "--user-id", "someone"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--user-id"));
}
