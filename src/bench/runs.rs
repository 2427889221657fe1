//! The runs the bench starts: a migration of 2024 with every candidate
//! migrated (POST_TO_OPEN_PERIOD: closed periods' candidates are posted to the
//! first open one rather than skipped), no pacing; and its rollback.
use std::time::{Duration, Instant};

use super::{
    client::{Client, Owner},
    progress,
    timeline::Timeline,
};
use crate::proto::{
    ClosedPeriodPolicy, MigrationEventKind, MigrationProgress, PaceSignal,
    RollbackMigrationRequest, SignalSetting, StartMigrationRequest,
};

/// How often a long run reports on stderr.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// No pacing: the database signals a run listens to by default are off too
/// (autovacuum of the tables a long run triples would halve its speed for
/// minutes at a time, and the figures measure the engine, not its pace).
pub fn start_request(owner: &Owner, batch_size: u32) -> StartMigrationRequest {
    let deaf = |signal: PaceSignal| SignalSetting {
        signal: signal.into(),
        disabled: true,
        ..Default::default()
    };
    StartMigrationRequest {
        organization_id: owner.org.to_string(),
        from_date: "2024-01-01".into(),
        to_date: "2024-12-31".into(),
        batch_size: i32::try_from(batch_size).expect("a batch size fits"),
        request_id: uuid::Uuid::new_v4().to_string(),
        closed_period_policy: ClosedPeriodPolicy::PostToOpenPeriod.into(),
        signals: [
            PaceSignal::Autovacuum,
            PaceSignal::WalArchiveBacklog,
            PaceSignal::ReplicaLag,
        ]
        .map(deaf)
        .into(),
        ..Default::default()
    }
}

/// Migrates `owner`'s organization and follows the run to its end.
pub async fn migrate(
    client: &Client,
    owner: &Owner,
    batch_size: u32,
    label: &str,
) -> anyhow::Result<Timeline> {
    migrate_with(client, owner, start_request(owner, batch_size), label).await
}

/// Starts `request` and follows the run to its end.
pub async fn migrate_with(
    client: &Client,
    owner: &Owner,
    request: StartMigrationRequest,
    label: &str,
) -> anyhow::Result<Timeline> {
    let mut client = client.clone();
    let called_at = Instant::now();
    let stream = client
        .start_migration(owner.request(request))
        .await?
        .into_inner();
    Timeline::follow(called_at, stream, reporter(label)).await
}

/// A run sized to `target_ms` a batch (from 100, no batch_size) that
/// listens as a run does by default, and slows down too while the business
/// probe runs over 3x its idle latency: figures m and n.
pub fn adaptive_request(owner: &Owner, target_ms: u32) -> StartMigrationRequest {
    StartMigrationRequest {
        target_batch_ms: Some(target_ms),
        signals: vec![SignalSetting {
            signal: PaceSignal::BusinessProbe.into(),
            ..Default::default()
        }],
        ..start_request(owner, 0)
    }
}

/// Rolls back run `migration_id` and follows it to ROLLED_BACK.
pub async fn roll_back(
    client: &Client,
    owner: &Owner,
    migration_id: &str,
    label: &str,
) -> anyhow::Result<Timeline> {
    let mut client = client.clone();
    let request = RollbackMigrationRequest {
        organization_id: owner.org.to_string(),
        migration_id: migration_id.to_owned(),
        reason: "hera-migrate bench: the rollback's throughput".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    };
    let called_at = Instant::now();
    let stream = client
        .rollback_migration(owner.request(request))
        .await?
        .into_inner();
    Timeline::follow(called_at, stream, reporter(label)).await
}

/// A progress line every [`REPORT_EVERY`] while batches arrive.
fn reporter(label: &str) -> impl FnMut(&MigrationProgress) + use<> {
    let label = label.to_owned();
    let mut last = Instant::now();
    move |event| {
        if event.kind() == MigrationEventKind::Batch && last.elapsed() >= REPORT_EVERY {
            last = Instant::now();
            progress!(
                "{label}: batch {}, {} of {} looked at ({:.0}/s)",
                event.batch_number,
                event.transactions_processed,
                event.transactions_processed + event.transactions_remaining,
                event
                    .performance_metrics
                    .as_ref()
                    .map_or(0.0, |m| m.transactions_per_second),
            );
        }
    }
}
