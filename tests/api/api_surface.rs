//! The whole contract is declared; what is not built yet says so honestly,
//! after the caller's identity and rights are checked.
use tonic::Code;

use crate::support::{TestApp, TestDatabase, app::token_for, fixtures, rpcs};

#[tokio::test]
async fn capabilities_not_built_yet_answer_unimplemented_naming_them() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    let org = fixtures::organization(&db.pool().await).await;

    let built = [
        "CheckSecurity",
        "PreviewCandidates",
        "GetMigration",
        "ListMigrations",
        "StartMigration",
        "WatchMigration",
        "PauseMigration",
        "ResumeMigration",
        "CancelMigration",
        "UpdateMigration",
        "ApplyReportingAliases",
        "ValidateMigration",
        "RollbackMigration",
        "CheckEnvironment",
        "MeasurePerformance",
        "AssessFailure",
        "DocumentIncident",
        "PreviewRollback",
        "VerifyAuditChain",
    ];
    for (rpc, answer) in rpcs::call_every_rpc(&app, org.id, Some(&token_for(org.owner))).await {
        if built.contains(&rpc) {
            if let Err(status) = answer {
                assert_ne!(status.code(), Code::Unimplemented, "{rpc} is built");
            }
            continue;
        }
        let status = answer.expect_err(rpc);
        assert_eq!(status.code(), Code::Unimplemented, "{rpc}: {status:?}");
        assert!(
            status.message().contains(rpc),
            "{rpc} names itself: {}",
            status.message()
        );
    }
    app.stop().await;
}
