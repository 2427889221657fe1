//! `grpc.health.v1`: SERVING while the database answers, NOT_SERVING while it
//! does not, for both the server as a whole ("") and `MigrationService`.
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{metrics::Recorder, proto::migration_service_server::SERVICE_NAME};

/// Probes the database every `interval` until cancelled, publishing each change.
pub async fn probe_database(
    pool: PgPool,
    reporter: HealthReporter,
    interval: Duration,
    cancel: CancellationToken,
    metrics: Recorder,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let status = if database_answers(&pool, interval).await {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        metrics.serving(status == ServingStatus::Serving);
        if published != Some(status) {
            tracing::info!(?status, "health changed");
            publish(&reporter, status).await;
            published = Some(status);
        }
    }
    publish(&reporter, ServingStatus::NotServing).await;
    metrics.serving(false);
}

async fn database_answers(pool: &PgPool, deadline: Duration) -> bool {
    let deadline = deadline.max(Duration::from_secs(1));
    matches!(
        tokio::time::timeout(deadline, sqlx::query("SELECT 1").execute(pool)).await,
        Ok(Ok(_))
    )
}

pub async fn publish(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}
