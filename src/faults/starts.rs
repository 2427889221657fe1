//! How the campaign's organization is seeded and each phase started: through
//! the real server's API, as an operator would (the faults may cut a call;
//! the run goes on).
use anyhow::Context as _;
use tokio_stream::StreamExt as _;
use uuid::Uuid;

use super::chaos::Chaos;
use crate::{
    bench::client::Owner,
    config::{DatabaseSettings, FaultSettings},
    db::Database,
    proto::{
        ApplyReportingAliasesRequest, ClosedPeriodPolicy, ListMigrationsRequest, MigrationPhase,
        RollbackMigrationRequest, StartMigrationRequest,
    },
    seed::{self, SeedParams},
};

/// The campaign's organization: seed-demo's, the schema installed first.
pub async fn seeded(
    cluster: &super::cluster::Cluster,
    settings: &FaultSettings,
    secret: &str,
) -> anyhow::Result<Owner> {
    let database = Database::open(&DatabaseSettings {
        database_url: Some(cluster.options()),
        data_dir: None,
        pool_size: 2,
    })
    .await?;
    let params = SeedParams {
        organizations: 1,
        transactions: settings.transactions,
        lines: 3,
        from: chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date"),
        to: chrono::NaiveDate::from_ymd_opt(2024, 12, 31).expect("a date"),
        seed: i64::try_from(settings.seed % (i64::MAX as u64)).unwrap_or(1),
    };
    let report = seed::seed_demo(database.admin_pool(), &params).await;
    database.close().await;
    Owner::of(&report?.organizations[0], secret)
}

pub async fn start_migration(
    chaos: &mut Chaos<'_>,
    batch_size: u32,
    pace: f64,
) -> anyhow::Result<String> {
    let mut client = chaos.client().await?;
    let request = StartMigrationRequest {
        organization_id: chaos.owner.org.to_string(),
        from_date: "2024-01-01".into(),
        to_date: "2024-12-31".into(),
        batch_size: i32::try_from(batch_size)?,
        request_id: Uuid::new_v4().to_string(),
        closed_period_policy: ClosedPeriodPolicy::PostToOpenPeriod.into(),
        max_transactions_per_second: Some(pace),
        ..Default::default()
    };
    let mut events = client
        .start_migration(chaos.owner.request(request))
        .await?
        .into_inner();
    let first = events
        .next()
        .await
        .context("no first event")??
        .into_progress();
    Ok(first.migration_id)
}

pub async fn start_rollback(chaos: &mut Chaos<'_>, id: &str, pace: f64) -> anyhow::Result<()> {
    let mut client = chaos.client().await?;
    let request = RollbackMigrationRequest {
        organization_id: chaos.owner.org.to_string(),
        migration_id: id.to_owned(),
        reason: "hera-migrate faults: a rollback under faults".into(),
        request_id: Uuid::new_v4().to_string(),
        max_transactions_per_second: Some(pace),
        ..Default::default()
    };
    let mut events = client
        .rollback_migration(chaos.owner.request(request))
        .await?
        .into_inner();
    events.next().await.context("no first rollback event")??;
    Ok(())
}

/// Starts the application of aliases to the organization's v1 ledger (a
/// unary call, which the faults may cut; the run goes on) and returns its
/// aliasing run's id.
pub async fn start_aliases(
    chaos: &mut Chaos<'_>,
    batch_size: u32,
    pace: f64,
) -> anyhow::Result<String> {
    let mut client = chaos.client().await?;
    let request = chaos.owner.request(ApplyReportingAliasesRequest {
        organization_id: chaos.owner.org.to_string(),
        request_id: Uuid::new_v4().to_string(),
        batch_size: i32::try_from(batch_size)?,
        max_transactions_per_second: Some(pace),
        ..Default::default()
    });
    let mut lister = client.clone();
    tokio::spawn(async move { client.apply_reporting_aliases(request).await });
    let list = ListMigrationsRequest {
        organization_id: chaos.owner.org.to_string(),
        page_size: 10,
        ..Default::default()
    };
    for _ in 0..600 {
        let runs = lister
            .list_migrations(chaos.owner.request(list.clone()))
            .await?
            .into_inner()
            .migrations;
        if let Some(run) = runs.iter().find(|r| r.phase() == MigrationPhase::Aliasing) {
            return Ok(run.migration_id.clone());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("no aliasing run appeared within 30 s")
}
