//! `hera-migrate faults`: a fault campaign against the real server binary.
//! On a private PostgreSQL of its own (it restarts it), seeded with
//! seed-demo, it applies reporting aliases to one organization, migrates it
//! and rolls the migration back, each phase under seeded random faults (see
//! chaos.rs), and after each checks from outside (checks.rs) that nothing was
//! lost, written twice, half written or unbalanced, that the trial balance is
//! what it was, that the run's history is complete and strictly ordered, and
//! that the run ended as an uninterrupted one would. Exit code 0 when every
//! check of every phase held.
use std::process::ExitCode;

use anyhow::Context as _;
use rand::SeedableRng as _;
use serde_json::json;
use tokio_stream::StreamExt as _;
use uuid::Uuid;

mod chaos;
mod checks;
mod cluster;

use self::{
    chaos::{Chaos, Tally},
    checks::expect,
    cluster::Cluster,
};
use crate::{
    bench::client::Owner,
    config::{DatabaseSettings, FaultSettings},
    db::Database,
    proto::{
        ApplyReportingAliasesRequest, ClosedPeriodPolicy, ListMigrationsRequest, Migration,
        MigrationPhase, MigrationState, RollbackMigrationRequest, StartMigrationRequest,
    },
    seed::{self, SeedParams},
};

/// One phase's outcome.
#[derive(Debug, serde::Serialize)]
struct PhaseReport {
    phase: &'static str,
    migration_id: String,
    state: String,
    faults: Tally,
    counts: checks::Counts,
    /// What did not hold; empty when the phase passed.
    failures: Vec<String>,
}

pub async fn run(settings: FaultSettings) -> anyhow::Result<ExitCode> {
    let dir = match &settings.data_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("hera-faults-{}", Uuid::new_v4().simple())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cluster = Cluster::start(&dir).await?;
    let outcome = campaign(&mut cluster, &settings).await;
    cluster.stop().await;
    if settings.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let reports = outcome?;
    let passed = reports.iter().all(|r| r.failures.is_empty());
    let kills: u32 = reports.iter().map(|r| r.faults.kills).sum();
    let inside: u32 = reports.iter().map(|r| r.faults.kills_inside_a_batch).sum();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "seed": settings.seed, "transactions": settings.transactions,
            "kills_per_phase": settings.kills, "kills": kills, "kills_inside_a_batch": inside,
            "passed": passed, "phases": reports,
        }))?
    );
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn campaign(
    cluster: &mut Cluster,
    settings: &FaultSettings,
) -> anyhow::Result<Vec<PhaseReport>> {
    let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let owner = seeded(cluster, settings, &secret).await?;
    let org = owner.org;
    // Each phase paced to last about two seconds of a server's time per kill, so
    // that every kill falls inside it.
    let pace = settings.transactions as f64 / (2.0 * f64::from(settings.kills.max(1)));
    let mut chaos = Chaos {
        cluster,
        rng: rand::rngs::StdRng::seed_from_u64(settings.seed),
        secret,
        owner,
        server: None,
        pace,
        batch_size: settings.batch_size,
    };
    let mut admin = chaos.admin().await?;
    let before = checks::trial_balance(&mut admin, org).await?;
    let mut reports = Vec::new();

    eprintln!("faults: applying reporting aliases to the organization");
    let aliasing = start_aliases(&mut chaos, settings.batch_size, pace).await?;
    let (run, mut report) = phase(
        &mut chaos,
        ("aliases", MigrationState::Succeeded),
        &aliasing,
        settings.kills,
        &before,
    )
    .await?;
    let progress = run.progress.clone().unwrap_or_default();
    expect(
        &mut report.failures,
        report.counts.aliased == progress.transactions_migrated
            && progress.transactions_remaining == 0,
        || {
            format!(
                "{} carry an alias, the run counted {} aliased, {} remaining",
                report.counts.aliased,
                progress.transactions_migrated,
                progress.transactions_remaining
            )
        },
    );
    reports.push(report);

    eprintln!("faults: migrating {} transactions", settings.transactions);
    let id = start_migration(&mut chaos, settings.batch_size, pace).await?;
    let (_, mut report) = phase(
        &mut chaos,
        ("migration", MigrationState::Succeeded),
        &id,
        settings.kills,
        &before,
    )
    .await?;
    let (c, n) = (report.counts, settings.transactions as i64);
    expect(
        &mut report.failures,
        c.originals_reversed == n && c.live_reversals == n && c.live_reposts == n,
        || {
            format!(
                "{n} candidates: {} reversed, {} reversals, {} reposts",
                c.originals_reversed, c.live_reversals, c.live_reposts
            )
        },
    );
    reports.push(report);

    eprintln!("faults: rolling the migration back");
    start_rollback(&mut chaos, &id, pace).await?;
    let (_, mut report) = phase(
        &mut chaos,
        ("rollback", MigrationState::RolledBack),
        &id,
        settings.kills,
        &before,
    )
    .await?;
    let c = report.counts;
    expect(
        &mut report.failures,
        c.originals_reversed == 0 && c.live_reversals == 0 && c.live_reposts == 0,
        || {
            format!(
                "after the rollback: {} reversed, {} live reversals, {} live reposts",
                c.originals_reversed, c.live_reversals, c.live_reposts
            )
        },
    );
    reports.push(report);

    if let Some(server) = chaos.server.take() {
        server.stop().await;
    }
    Ok(reports)
}

/// The phase of run `id` under faults to its end, and its report.
async fn phase(
    chaos: &mut Chaos<'_>,
    name_and_end: (&'static str, MigrationState),
    id: &str,
    kills: u32,
    before: &str,
) -> anyhow::Result<(Migration, PhaseReport)> {
    let (run, tally) = chaos.drive(id, kills).await?;
    let report = phase_report(name_and_end, id, &run, tally, chaos, before).await?;
    Ok((run, report))
}

/// The checks every phase shares: ended in the state an undisturbed one
/// ends in, nothing doubled, half written or unbalanced, the trial balance
/// as before, the history whole and ordered.
async fn phase_report(
    (phase, ends): (&'static str, MigrationState),
    id: &str,
    run: &Migration,
    faults: Tally,
    chaos: &mut Chaos<'_>,
    before: &str,
) -> anyhow::Result<PhaseReport> {
    let org = chaos.owner.org;
    let mut admin = chaos.admin().await?;
    let counts = checks::counts(&mut admin, org).await?;
    let mut failures = checks::history_faults(&mut admin, id.parse()?).await?;
    expect(&mut failures, run.state() == ends, || {
        format!("ended {:?}, not {ends:?}", run.state())
    });
    expect(&mut failures, counts.doubled == 0, || {
        format!("{} originals copied twice", counts.doubled)
    });
    expect(&mut failures, counts.half_written == 0, || {
        format!("{} copies half written", counts.half_written)
    });
    expect(&mut failures, counts.unbalanced == 0, || {
        format!("{} transactions unbalanced", counts.unbalanced)
    });
    expect(
        &mut failures,
        checks::trial_balance(&mut admin, org).await? == before,
        || "the trial balance changed".into(),
    );
    expect(&mut failures, faults.storm_internal_errors == 0, || {
        format!(
            "{} storm calls answered INTERNAL",
            faults.storm_internal_errors
        )
    });
    eprintln!(
        "faults: {phase} ended {:?} after {faults:?}; {} failure(s)",
        run.state(),
        failures.len()
    );
    Ok(PhaseReport {
        phase,
        migration_id: id.to_owned(),
        state: format!("{:?}", run.state()),
        faults,
        counts,
        failures,
    })
}

/// The campaign's organization: seed-demo's, the schema installed first.
async fn seeded(
    cluster: &Cluster,
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

async fn start_migration(
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
    let first = events.next().await.context("no first event")??;
    Ok(first.migration_id)
}

async fn start_rollback(chaos: &mut Chaos<'_>, id: &str, pace: f64) -> anyhow::Result<()> {
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
async fn start_aliases(
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
