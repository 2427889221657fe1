//! `hera-migrate faults`: a fault campaign against the real server binary,
//! as replicas (two by default) over one private PostgreSQL of its own (it
//! restarts it), seeded with seed-demo. It applies reporting aliases to one
//! organization, migrates it and rolls the migration back, each phase under
//! seeded random faults (see chaos.rs), and after each checks from outside
//! (checks.rs) that nothing was lost, written twice, half written or
//! unbalanced, that the trial balance is what it was, that the run's history
//! is complete and strictly ordered, that no two servers' batches ever
//! overlapped, that a killed executor's run was taken over within the lease
//! interval, and that the run ended as an uninterrupted one would. Exit code
//! 0 when every check of every phase held.
use std::process::ExitCode;

use anyhow::Context as _;
use rand::SeedableRng as _;
use serde_json::json;
use uuid::Uuid;

mod chaos;
mod checks;
mod cluster;
mod starts;

use self::{
    chaos::{Chaos, Tally},
    checks::expect,
    cluster::Cluster,
    starts::{seeded, start_aliases, start_migration, start_rollback},
};
use crate::{
    config::FaultSettings,
    proto::{Migration, MigrationState},
};

/// What a takeover may take beyond the lease check interval: the standby's
/// look, its lease, the batch it then writes.
const TAKEOVER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// One phase's outcome.
#[derive(Debug, serde::Serialize)]
struct PhaseReport {
    phase: &'static str,
    migration_id: String,
    state: String,
    faults: Tally,
    counts: checks::Counts,
    /// Who wrote the phase's batches.
    executors: checks::Executors,
    /// Milliseconds from each kill of the executor to the run's next event
    /// under a later lease (kills after which the run wrote nothing more left out).
    takeover_ms: Vec<u64>,
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
            "replicas": settings.replicas,
            "lease_check_interval_ms": chaos::LEASE_CHECK.as_millis(),
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
        servers: Vec::new(),
        replicas: usize::from(settings.replicas),
        kills: Vec::new(),
        restarts: Vec::new(),
        crashes: Vec::new(),
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

    chaos.stop_servers().await;
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
    let history = checks::history(&mut admin, id.parse()?).await?;
    let mut failures = checks::history_faults(&history);
    failures.append(&mut chaos.crashes);
    let batch_phase = batch_phase(phase);
    failures.extend(checks::overlap_faults(&history, batch_phase));
    let takeover_ms = takeover_faults(chaos, &history, &mut failures);
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
    expect(&mut failures, counts.audit_chain_broken == 0, || {
        "the audit chain does not verify (hera-migrate verify-audit-chain names the entry)".into()
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
        executors: checks::executors(&history, batch_phase),
        takeover_ms,
        failures,
    })
}

/// The run phase whose batches a campaign phase writes.
fn batch_phase(phase: &str) -> &'static str {
    match phase {
        "aliases" => "ALIASING",
        "rollback" => "ROLLBACK",
        _ => "EXECUTION",
    }
}

/// How long each kill of the executor took to be taken over, in ms; with
/// two replicas or more, one that took longer than the lease interval plus
/// [`TAKEOVER_GRACE`] (a batch, a connection) is a failure, unless
/// PostgreSQL was restarted in between (then every server reconnects first).
fn takeover_faults(
    chaos: &Chaos<'_>,
    history: &[checks::Event],
    failures: &mut Vec<String>,
) -> Vec<u64> {
    let within = chaos::LEASE_CHECK + TAKEOVER_GRACE;
    let executor_kills = chaos
        .kills
        .iter()
        .filter(|k| k.executor_generation.is_some());
    let mut taken = Vec::new();
    for (kill, took) in executor_kills.zip(checks::takeovers(history, &chaos.kills)) {
        let Some(took) = took else { continue };
        taken.push(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
        let restarted = chaos
            .restarts
            .iter()
            .any(|r| *r >= kill.at && (*r - kill.at).to_std().unwrap_or_default() <= took);
        expect(
            failures,
            chaos.replicas < 2 || restarted || took <= within,
            || {
                format!(
                    "the run was taken over {took:?} after its executor was killed (within {within:?} expected)"
                )
            },
        );
    }
    taken
}
