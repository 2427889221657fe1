//! Calls every `MigrationService` RPC once, for tests about the whole surface.
use hera_migrate::proto::*;
use tonic::{Request, Status};
use uuid::Uuid;

use super::{TestApp, authorized};

fn request<T>(message: T, token: Option<&str>) -> Request<T> {
    match token {
        Some(token) => authorized(message, token),
        None => Request::new(message),
    }
}

/// Each RPC's name and outcome, every request naming `organization`.
pub async fn call_every_rpc(
    app: &TestApp,
    organization: Uuid,
    token: Option<&str>,
) -> Vec<(&'static str, Result<(), Status>)> {
    let mut client = app.client().await;
    let organization_id = organization.to_string();
    let org = || organization_id.clone();
    let t = token;
    vec![
        (
            "PreviewCandidates",
            client
                .preview_candidates(request(
                    PreviewCandidatesRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "StartMigration",
            client
                .start_migration(request(
                    StartMigrationRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "WatchMigration",
            client
                .watch_migration(request(
                    WatchMigrationRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "GetMigration",
            client
                .get_migration(request(
                    GetMigrationRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "ListMigrations",
            client
                .list_migrations(request(
                    ListMigrationsRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "PauseMigration",
            client
                .pause_migration(request(
                    PauseMigrationRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "ResumeMigration",
            client
                .resume_migration(request(
                    ResumeMigrationRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "CancelMigration",
            client
                .cancel_migration(request(
                    CancelMigrationRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "UpdateMigration",
            client
                .update_migration(request(
                    UpdateMigrationRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "ApplyReportingAliases",
            client
                .apply_reporting_aliases(request(
                    ApplyReportingAliasesRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "ValidateMigration",
            client
                .validate_migration(request(
                    ValidateMigrationRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "RollbackMigration",
            client
                .rollback_migration(request(
                    RollbackMigrationRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "CheckSecurity",
            client
                .check_security(request(
                    CheckSecurityRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "CheckEnvironment",
            client
                .check_environment(request(
                    CheckEnvironmentRequest {
                        organization_id: org(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "MeasurePerformance",
            client
                .measure_performance(request(
                    MeasurePerformanceRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "AssessFailure",
            client
                .assess_failure(request(
                    AssessFailureRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "PreviewRollback",
            client
                .preview_rollback(request(
                    PreviewRollbackRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "DocumentIncident",
            client
                .document_incident(request(
                    DocumentIncidentRequest {
                        organization_id: org(),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
        (
            "VerifyAuditChain",
            client
                .verify_audit_chain(request(
                    VerifyAuditChainRequest {
                        organization_id: org(),
                    },
                    t,
                ))
                .await
                .map(drop),
        ),
    ]
}
