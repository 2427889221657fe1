use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{TestApp, TestDatabase, proxy::TcpProxy, wait};

const MIGRATION_SERVICE: &str = "hera.migration.v2.MigrationService";

async fn wait_for_status(app: &TestApp, wanted: ServingStatus) {
    wait::until(
        &format!("health {wanted:?}"),
        Duration::from_secs(15),
        || async {
            let overall = app.health("").await;
            let service = app.health(MIGRATION_SERVICE).await;
            (overall == wanted && service == wanted).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn serving_while_the_database_answers() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(db.options()).await;
    wait_for_status(&app, ServingStatus::Serving).await;
    app.stop().await;
}

#[tokio::test]
async fn not_serving_while_the_database_is_gone_and_serving_again_when_it_returns() {
    let db = TestDatabase::create().await;
    let proxy = TcpProxy::start(db.upstream()).await;
    let app = TestApp::spawn(db.options_via(proxy.port())).await;
    wait_for_status(&app, ServingStatus::Serving).await;

    proxy.cut();
    wait_for_status(&app, ServingStatus::NotServing).await;

    proxy.restore();
    wait_for_status(&app, ServingStatus::Serving).await;
    app.stop().await;
}
