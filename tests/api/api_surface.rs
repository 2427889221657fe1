//! The whole contract is declared; what is not built yet says so honestly.
use tonic::Code;

use crate::support::{TestApp, TestDatabase};
use hera_migrate::proto::*;

#[tokio::test]
async fn capabilities_not_built_yet_answer_unimplemented_naming_them() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let mut client = app.client().await;

    let answers: Vec<(&str, Result<(), tonic::Status>)> = vec![
        ("PreviewCandidates", client.preview_candidates(PreviewCandidatesRequest::default()).await.map(drop)),
        ("StartMigration", client.start_migration(StartMigrationRequest::default()).await.map(drop)),
        ("WatchMigration", client.watch_migration(WatchMigrationRequest::default()).await.map(drop)),
        ("GetMigration", client.get_migration(GetMigrationRequest::default()).await.map(drop)),
        ("ListMigrations", client.list_migrations(ListMigrationsRequest::default()).await.map(drop)),
        ("PauseMigration", client.pause_migration(PauseMigrationRequest::default()).await.map(drop)),
        ("ResumeMigration", client.resume_migration(ResumeMigrationRequest::default()).await.map(drop)),
        ("CancelMigration", client.cancel_migration(CancelMigrationRequest::default()).await.map(drop)),
        ("UpdateMigration", client.update_migration(UpdateMigrationRequest::default()).await.map(drop)),
        (
            "ApplyReportingAliases",
            client.apply_reporting_aliases(ApplyReportingAliasesRequest::default()).await.map(drop),
        ),
        ("ValidateMigration", client.validate_migration(ValidateMigrationRequest::default()).await.map(drop)),
        ("RollbackMigration", client.rollback_migration(RollbackMigrationRequest::default()).await.map(drop)),
        ("CheckSecurity", client.check_security(CheckSecurityRequest::default()).await.map(drop)),
        ("CheckEnvironment", client.check_environment(CheckEnvironmentRequest::default()).await.map(drop)),
        (
            "MeasurePerformance",
            client.measure_performance(MeasurePerformanceRequest::default()).await.map(drop),
        ),
        ("AssessFailure", client.assess_failure(AssessFailureRequest::default()).await.map(drop)),
        ("DocumentIncident", client.document_incident(DocumentIncidentRequest::default()).await.map(drop)),
    ];

    for (rpc, answer) in answers {
        let status = answer.expect_err(rpc);
        assert_eq!(status.code(), Code::Unimplemented, "{rpc}: {status:?}");
        assert!(status.message().contains(rpc), "{rpc} names itself: {}", status.message());
    }
    app.stop().await;
}
